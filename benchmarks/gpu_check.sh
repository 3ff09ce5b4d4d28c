#!/usr/bin/env bash
# The GPU learner check, run where a CUDA GPU is visible (what produced BENCHMARKS.md's "GPU
# learner" figures): the device tests, the update benchmark (GPU vs the same machine's CPU) and a
# short `mtrl train` of agents/mtsac-fast.yaml on reach4 with the learner on the GPU and on the CPU.
#
#   OUT=some/folder bash benchmarks/gpu_check.sh [STEPS]
#
# Needs mtrl's dependencies importable (pip install -e . or PYTHONPATH), MUJOCO_GL unset or egl.
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu_check}
STEPS=${1:-15000}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" \
  | tee -a "$OUT/gpu.txt"
echo "== device tests"
"$PY" -m pytest -q -p no:cacheprovider tests/test_device.py 2>&1 | tail -15 | tee "$OUT/pytest.txt"
echo "== update speed"
"$PY" benchmarks/speed_device.py --updates 30 --rounds 3 --out "$OUT/speed_device.jsonl" 2>&1 | tail -8
for dev in cuda cpu; do
  echo "== mtrl train reach4 mtsac-fast device=$dev, $STEPS steps"
  rm -rf "/tmp/gpu_check_$dev"
  t0=$(date +%s.%N)
  timeout 200 "$PY" -m mtrl.cli train envs/reach4.yaml agents/mtsac-fast.yaml "device=$dev" threads=8 \
    "total_steps=$STEPS" eval_every=0 checkpoint_every=0 "run_dir=/tmp/gpu_check_$dev" > "$OUT/train_$dev.txt" 2>&1
  echo "exit $? after $(echo "$(date +%s.%N) - $t0" | bc) s (start-up included)"; grep -E "learner on|precision|steps/s|error|Error" "$OUT/train_$dev.txt" | tail -6
done
