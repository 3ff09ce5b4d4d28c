"""Multi-task architectures with MT-SAC on Meta-World, with and without PCGrad (issue 14).

Each (set, architecture, surgery, seed) is one ``mtrl train ENV agents/mtsac.yaml sac.arch=A
surgery=S`` run to a fixed env-step budget (``--steps``, all tasks together), evaluated every
``--eval-every`` steps; architectures differ in update cost, so the budget is in env steps, and
each row also has the training wall-clock. The recipe is the faster one a CPU user would pick
(``--recipe``: 256x2 trunks, one update per two vector steps) unless told otherwise. Every
finished run appends a JSON line to ``OUT/<set>/results.jsonl`` and is skipped when the script
runs again, so the comparison can span sessions.

    .venv/bin/python benchmarks/archs_metaworld.py                                   # everything, seeds 0-2
    .venv/bin/python benchmarks/archs_metaworld.py --sets reach4 --archs mlp moore --seeds 0
    .venv/bin/python benchmarks/archs_metaworld.py --plot-only

A surgery method takes its options after a colon (``cagrad:c=0.9`` -> ``surgery=cagrad
surgery_args.c=0.9``). The surgery comparison of issue 13 on the shared-network form of the
``mtsac-fast`` recipe with per-task reward normalisation (``SURGERY_RECIPE``):

    .venv/bin/python benchmarks/archs_metaworld.py --sets reach4 --archs mlp \
        --surgery mean pcgrad cagrad:c=0.9 nashmtl --recipe-name surgery --out benchmarks/results/surgery_reach4_rnorm

Writes ``OUT/<set>/table.md`` and ``OUT/<set>/curves.png`` (mean success against wall-clock and
against env steps).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from runlock import run_once
from sac_recipes import ROOT, load, run_one, summarise

SETS = {"reach4": "envs/reach4.yaml", "manip4": "envs/manip4.yaml"}
ARCHS = ["mlp", "multihead", "softmod", "moore", "paco"]
RECIPE = ["sac.hidden=[256,256]", "sac.utd=0.5"]
#: agents/mtsac-fast.yaml's keys that apply to one shared network (all but ``sac.heads=ensemble``), with
#: per-task reward normalisation: the recipe of the surgery re-run (issue 13)
SURGERY_RECIPE = [*RECIPE, "sac.precision=auto", "sac.buffer_per_task=1000000", "sac.critic_layer_norm=true",
                  "sac.alpha_min=0.03", "sac.actor_ema=0.001", "reward_norm=max_return", "diagnostics_every=1000"]
RECIPES = {"cpu": RECIPE, "surgery": SURGERY_RECIPE}


def surgery_overrides(spec: str) -> list[str]:
    """``cagrad:c=0.9`` -> ``["surgery=cagrad", "surgery_args.c=0.9"]``."""
    name, _, opts = spec.partition(":")
    return [f"surgery={name}", *(f"surgery_args.{kv}" for kv in opts.split(",") if kv)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--archs", nargs="+", default=ARCHS)
    p.add_argument("--surgery", nargs="+", default=["mean", "pcgrad"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--eval-every", type=int, default=20_000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--recipe", nargs="*", default=None, help="overrides shared by every run (default: --recipe-name's)")
    p.add_argument("--recipe-name", choices=list(RECIPES), default="cpu",
                   help="cpu: 256x2, utd 0.5; surgery: + the mtsac-fast keys for a shared network and reward_norm")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/archs"))
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()
    recipe = RECIPES[args.recipe_name] if args.recipe is None else args.recipe
    for name in args.sets:
        out = Path(args.out) / name
        out.mkdir(parents=True, exist_ok=True)
        results = out / "results.jsonl"
        if not args.plot_only:
            for seed in args.seeds:  # seeds outermost: a partial comparison still covers every method
                for arch in args.archs:
                    for surgery in args.surgery:
                        label = f"{arch}+{surgery}" if surgery != "mean" else arch
                        overrides = [*recipe, f"sac.arch={arch}", *surgery_overrides(surgery)]
                        run_once(out, f"{label}_s{seed}",
                                 lambda r, label=label, seed=seed, overrides=overrides: (
                                     r["variant"], r["seed"], r["overrides"]) == (label, seed, overrides),
                                 lambda label=label, seed=seed, overrides=overrides, out=out, env=SETS[name]: run_one(
                                     label, seed, overrides, out, None, args.eval_every, args.eval_episodes,
                                     env=env, total_steps=args.steps))
        if load(results):
            print(json.dumps({name: summarise(load(results), out, f"MT-SAC architectures on Meta-World {name}")},
                             indent=2))


if __name__ == "__main__":
    main()
