"""Single-task anchor for MT-SAC: mtrl's SAC against Stable-Baselines3's SAC on one Meta-World task.

MT-SAC on reach4 learns window-open and button-press-topdown far more slowly than published
single-task SAC (TD-MPC2's curves: window-open 0.8-1.0 by 100k steps, button-press-topdown 0.9 by
200k). This script separates "multi-task interference" from "our SAC is slow": both learners see
the same single task (``metaworld/MT1:<task>``, mtrl's observation with its one-hot, 500-step
episodes, truncation bootstrapped), the same networks (256x2), batch 256, one update per env step,
lr 3e-4, 5k random steps first, and are evaluated the same way (deterministic actions,
``--eval-episodes`` episodes every ``--eval-every`` env steps, success = succeeded at any step).

    .venv/bin/python benchmarks/sac_single_task.py --tasks window-open-v3 --libs mtrl sb3 --steps 150000
    .venv/bin/python benchmarks/sac_single_task.py --plot-only

One JSON line per (lib, task, seed, variant) in ``OUT/results.jsonl``, skipped when already there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from peers import sb3_sac_curve  # noqa: E402
from runlock import run_once  # noqa: E402
from sac_recipes import load, run_one  # noqa: E402

SAC = dict(hidden=[256, 256], batch=256, lr=3e-4, gamma=0.99, tau=0.005, learning_starts=5_000)
# mtrl variants: overrides on top of the matched single-task setting
MTRL = ["sac.hidden=[256,256]", "sac.batch_per_task=256", "sac.utd=1", "sac.learning_starts=5000",
        "envs_per_task=1", "runners=0"]
VARIANTS = {"matched": MTRL}


def run_sb3(task: str, seed: int, steps: int, eval_every: int, episodes: int) -> list[list[float]]:
    """SB3 SAC on TaskSetEnv(metaworld/MT1:task); returns [[env steps, training s, success], ...]."""
    from mtrl.interop import TaskSetEnv

    taskset = f"metaworld/MT1:{task}"
    curve = sb3_sac_curve(TaskSetEnv(taskset, seed=seed), taskset, SAC, seed, eval_every, episodes, steps=steps,
                          tag=f"sb3 {task}")
    return [row[:3] for row in curve]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["window-open-v3", "button-press-topdown-v3"])
    p.add_argument("--libs", nargs="+", default=["mtrl", "sb3"], choices=["mtrl", "sb3"])
    p.add_argument("--variants", nargs="+", default=["matched"], choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=150_000)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/sac_single_task"))
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    if not args.plot_only:
        for seed in args.seeds:
            for task in args.tasks:
                for lib in args.libs:
                    for v in (args.variants if lib == "mtrl" else ["matched"]):
                        key = dict(lib=lib, task=task, seed=seed, variant=v, steps=args.steps)

                        def run(key=key) -> dict:
                            lib, task, seed, v = key["lib"], key["task"], key["seed"], key["variant"]
                            if lib == "sb3":
                                curve = run_sb3(task, seed, args.steps, args.eval_every, args.eval_episodes)
                            else:
                                curve = run_one(f"{v}_{task}", seed, [f"taskset=metaworld/MT1:{task}", *VARIANTS[v]],
                                                out, None, args.eval_every, args.eval_episodes,
                                                total_steps=args.steps)["curve"]
                            return {**key, "curve": curve}

                        run_once(out, f"{lib}_{v}_{task}_s{seed}_{args.steps}",
                                 lambda r, key=key: all(r.get(k) == x for k, x in key.items()), run)
    rows = load(results)
    lines = ["| lib | variant | task | seed | success by env steps (k: success) | best |", "|---|---|---|---|---|---|"]
    for r in rows:
        c = np.asarray(r["curve"])
        pts = ", ".join(f"{int(s) // 1000}k: {v:.1f}" for s, _, v in c[1::2]) if len(c) else ""
        lines.append(f"| {r['lib']} | {r['variant']} | {r['task']} | {r['seed']} | {pts} | "
                     f"{c[:, 2].max() if len(c) else float('nan'):.2f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
