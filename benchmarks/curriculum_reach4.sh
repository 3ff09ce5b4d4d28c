#!/usr/bin/env bash
# CAMRL vs uniform with MT-SAC on the Meta-World reach4 subset (the MT-SAC benchmark's tasks and
# settings: 256x256, utd 0.5, 128 per task), 3 seeds each, then `mtrl compare` (which groups runs
# by curriculum). CAMRL trains one actor and twin critic per task (sac.heads=ensemble); uniform
# uses the shared one-hot networks, and a third arm (uniform with ensemble heads) separates the
# effect of CAMRL's schedule and transfer from that of per-task networks.
# Usage: benchmarks/curriculum_reach4.sh [STEPS] ; outputs in benchmarks/results/curriculum_reach4/
# 200k steps: about 1h45 on 2 cores (three processes sharing them).
set -euo pipefail
STEPS=${1:-200000}
OUT=benchmarks/results/curriculum_reach4
mkdir -p "$OUT"
common=('sac.hidden=[256,256]' sac.utd=0.5)
.venv/bin/python benchmarks/learn_sac_metaworld.py --steps "$STEPS" --seeds 0 1 2 --parallel 1 \
  --agent agents/mtsac-uniform.yaml --label uniform -- "${common[@]}" > "$OUT/uniform.out" 2>&1 &
.venv/bin/python benchmarks/learn_sac_metaworld.py --steps "$STEPS" --seeds 0 1 2 --parallel 1 \
  --agent agents/mtsac-uniform.yaml --label uniform-ensemble -- "${common[@]}" sac.heads=ensemble \
  > "$OUT/uniform-ensemble.out" 2>&1 &
.venv/bin/python benchmarks/learn_sac_metaworld.py --steps "$STEPS" --seeds 0 1 2 --parallel 1 \
  --agent agents/mtsac-camrl.yaml --label camrl -- "${common[@]}" > "$OUT/camrl.out" 2>&1 &
wait
runs=()
for m in uniform uniform-ensemble camrl; do for s in 0 1 2; do
  runs+=("$(ls -d benchmarks/results/runs/${m}_reach4_s${s}_* | sort | tail -n 1)")
done; done
.venv/bin/mtrl compare "${runs[@]}" --out "$OUT"
