#!/usr/bin/env bash
# The GPU learner check, run where a CUDA GPU is visible (what produced BENCHMARKS.md's "GPU
# learner" figures): the device tests, the update benchmark (GPU vs the same machine's CPU) and a
# short `mtrl train` of agents/mtsac-fast.yaml on reach4 with the learner on the GPU and on the CPU.
#
#   OUT=some/folder [PARTS="tests speed train"] bash benchmarks/gpu_check.sh [STEPS]
#
# Needs mtrl's dependencies importable (pip install -e . or PYTHONPATH). Training renders nothing:
# MUJOCO_GL=disable spares a machine without EGL/OSMesa libraries MuJoCo's GL import.
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu_check}
STEPS=${1:-15000}
PY=${PY:-python3}
PARTS=${PARTS:-tests speed train}
export MUJOCO_GL=${MUJOCO_GL:-disable}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" \
  | tee -a "$OUT/gpu.txt"
if [[ $PARTS == *tests* ]]; then
echo "== device tests"
"$PY" -m pytest -q -p no:cacheprovider tests/test_device.py 2>&1 | tail -15 | tee "$OUT/pytest.txt"
fi
if [[ $PARTS == *speed* ]]; then
echo "== update speed"
"$PY" benchmarks/speed_device.py --updates 30 --rounds 3 --out "$OUT/speed_device.jsonl" 2>&1 | tail -8
fi
[[ $PARTS == *train* ]] && for dev in cuda cpu; do
  echo "== mtrl train reach4 mtsac-fast device=$dev, $STEPS steps"
  rm -rf "/tmp/gpu_check_$dev"
  t0=$(date +%s)
  timeout 200 "$PY" -m mtrl.cli train envs/reach4.yaml agents/mtsac-fast.yaml "device=$dev" threads=8 \
    "total_steps=$STEPS" "eval_every=$STEPS" eval_episodes=1 checkpoint_every=0 "run_dir=/tmp/gpu_check_$dev" > "$OUT/train_$dev.txt" 2>&1
  echo "exit $? after $(( $(date +%s) - t0 )) s (start-up included)"; grep -E "learner on|steps/s|eval at|error|Error" "$OUT/train_$dev.txt" | tail -5
done
if [[ $PARTS == *train* ]]; then
  echo "== mtrl eval of the GPU-trained run (loaded onto the CPU)"
  "$PY" -m mtrl.cli eval /tmp/gpu_check_cuda --episodes 1 2>&1 | tail -4 | tee "$OUT/eval_cuda_run.txt"
fi
