#!/usr/bin/env bash
# Gradient-surgery learning comparison with MT-SAC on the Meta-World reach4 subset (the MT-SAC
# benchmark's tasks and settings): mean vs PCGrad vs CAGrad (c=0.9) vs Nash-MTL, 3 seeds each.
# One learn_sac_metaworld.py per method, all four at once, each running its seeds in turn
# (so a cut-short run still has every method at seed 0); then `mtrl compare` over the runs.
# Usage: benchmarks/surgery_metaworld.sh [STEPS] ; outputs in benchmarks/results/surgery_reach4/
# 200k steps: ~75 min on 2 cores (4 processes sharing them).
set -euo pipefail
STEPS=${1:-200000}
METHODS=${METHODS:-"mean pcgrad cagrad nashmtl"}
OUT=benchmarks/results/surgery_reach4
mkdir -p "$OUT"
for m in $METHODS; do
  extra=()
  [ "$m" = cagrad ] && extra+=(surgery_args.c=0.9)
  .venv/bin/python benchmarks/learn_sac_metaworld.py --steps "$STEPS" --seeds 0 1 2 --parallel 1 \
    --agent agents/mtsac.yaml --label "$m" -- 'sac.hidden=[256,256]' sac.utd=0.5 surgery="$m" \
    diagnostics_every=1000 "${extra[@]}" > "$OUT/$m.out" 2>&1 &
done
wait
runs=()
for m in $METHODS; do for s in 0 1 2; do
  runs+=("$(ls -d benchmarks/results/runs/${m}_reach4_s${s}_* | sort | tail -n 1)")
done; done
.venv/bin/mtrl compare "${runs[@]}" --out "$OUT"
