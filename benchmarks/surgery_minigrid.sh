#!/usr/bin/env bash
# Gradient-surgery learning comparison with MT-PPO on MiniGrid MT5: METHODS x SEEDS runs,
# two at a time, then `mtrl compare` (IQM over runs x tasks, stratified bootstrap CIs).
# Usage: benchmarks/surgery_minigrid.sh [STEPS] ; outputs in benchmarks/results/surgery_minigrid/
set -euo pipefail
STEPS=${1:-400000}
METHODS=${METHODS:-"mean pcgrad cagrad nashmtl"}
SEEDS=${SEEDS:-"0 1 2"}
OUT=benchmarks/results/surgery_minigrid
mkdir -p "$OUT" runs/surgery_minigrid
jobs_list=()
for s in $SEEDS; do for m in $METHODS; do jobs_list+=("$m $s"); done; done
run_one() {
  set -- $1
  args=(surgery="$1")
  [ "$1" = cagrad ] && args+=('surgery_args={c: 0.5}')
  .venv/bin/mtrl train envs/minigrid-mt5.yaml agents/mtppo.yaml total_steps="$STEPS" envs_per_task=8 seed="$2" \
    checkpoint_every=0 log_every=2 "${args[@]}" run_dir="runs/surgery_minigrid/$1_s$2" > "runs/surgery_minigrid/$1_s$2.log" 2>&1
  echo "$1 seed $2 done"
}
export -f run_one; export STEPS
printf '%s\n' "${jobs_list[@]}" | xargs -P 2 -I{} bash -c 'run_one "{}"'
.venv/bin/mtrl compare runs/surgery_minigrid/*_s[0-9] --out "$OUT"
