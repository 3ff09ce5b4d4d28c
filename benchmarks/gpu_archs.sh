#!/usr/bin/env bash
# MT10 at a reduced budget on a GPU machine (issue 14): the five compared architectures (MT-SAC,
# 256x2 trunks, one update per two vector steps, learner on the GPU, in-process sampling) trained
# side by side on one machine for the same wall-clock, then the update time per architecture at
# T=10 on that GPU, with the device tests (every architecture's GPU learner against the CPU one)
# run alongside the training.
#
#   OUT=some/folder [MINUTES=6] [ARCHS="mlp moore"] [THREADS=3] [EVAL_EVERY=25000] bash benchmarks/gpu_archs.sh
#
# Needs mtrl's dependencies importable (pip install -e . or PYTHONPATH). Writes to OUT: gpu.txt,
# pytest.txt, results.jsonl / table.md / curves.png (benchmarks/archs_metaworld.py --minutes, time-
# budgeted rows), summary.txt, speed_archs_gpu.json and logs.tgz (each run's train.log and
# eval_history.jsonl). Runs on one machine share its cores and GPU alike: compare them with each
# other, not with the CPU runs of BENCHMARKS.md.
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu_archs}
MINUTES=${MINUTES:-6}
ARCHS=${ARCHS:-"mlp multihead softmod moore paco"}
THREADS=${THREADS:-3}
EVAL_EVERY=${EVAL_EVERY:-25000}
DEVICE=${DEVICE:-cuda}  # cpu: a smoke test of this script on a machine without a GPU
PY=${PY:-python3}
WORK=${WORK:-/tmp/gpu_archs}
export MUJOCO_GL=${MUJOCO_GL:-disable} PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
OUT=$(realpath "$OUT") WORK=$(realpath "$WORK")
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; } 2>&1 | tee "$OUT/gpu.txt"
"$PY" -c "import torch, mtrl.cli, metaworld, gymnasium, omegaconf; print('torch', torch.__version__, torch.cuda.is_available())" \
  2>&1 | tee -a "$OUT/gpu.txt" || exit 1
("$PY" -m pytest -q -p no:cacheprovider tests/test_device.py > "$OUT/pytest.txt" 2>&1) &
for a in $ARCHS; do
  "$PY" benchmarks/archs_metaworld.py --sets mt10 --archs "$a" --surgery mean --seeds 0 --minutes "$MINUTES" \
    --steps 100000000 --eval-every "$EVAL_EVERY" --eval-episodes 3 --out "$WORK" \
    --recipe "sac.hidden=[256,256]" sac.utd=0.5 "device=$DEVICE" "threads=$THREADS" > "$WORK/log_$a.txt" 2>&1 &
done
wait  # the runs and the tests
tail -3 "$OUT/pytest.txt"
"$PY" benchmarks/archs_metaworld.py --sets mt10 --out "$WORK" --plot-only > "$OUT/summary.txt" 2>&1
cat "$WORK/mt10/table.md"
cp "$WORK/mt10/results.jsonl" "$WORK/mt10/table.md" "$WORK/mt10/curves.png" "$OUT/" 2>/dev/null
(cd "$WORK" && tar czf "$OUT/logs.tgz" log_*.txt mt10/runs/*/train.log mt10/runs/*/eval_history.jsonl) 2>/dev/null
echo "== update time per architecture at T=10 on the GPU"
"$PY" benchmarks/speed_archs.py --device "$DEVICE" --reps 5 --out "$OUT/speed_archs_gpu.json" > "$WORK/speed_archs.log" 2>&1 \
  || { tail -5 "$WORK/speed_archs.log"; exit 1; }
"$PY" -c "import json, sys; [print(k, v) for k, v in json.load(open(sys.argv[1]))['archs'].items()]" "$OUT/speed_archs_gpu.json"
