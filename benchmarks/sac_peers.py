"""MT-SAC against Stable-Baselines3 SAC on Meta-World reach4, in wall-clock time (issue 12).

The question a user asks: which one reaches a given success sooner on this machine? Both see the
same four tasks through the same observations (mtrl's, with the task one-hot;
:func:`mtrl.interop.sb3_vec_env`, one env per task, 500-step episodes, time limits bootstrapped)
and are evaluated the same way (``--eval-episodes`` deterministic episodes per task every
``--eval-every`` env steps, :func:`peers.evaluate`; evaluation time is not counted as training
time on either side). Each runs in one process with one torch thread.

- **SB3 SAC**, matched to mtrl's CPU recipe (``sac_recipes.py``'s ``base``): 256x2 MLPs, batch
  512 (mtrl: 128 per task x 4), one gradient step per two vector steps (mtrl's ``utd: 0.5``),
  lr 3e-4, gamma 0.99, tau 0.005, 5k random steps, a 400k replay buffer (mtrl: 100k per task),
  automatic temperature (one for all tasks; mtrl has one per task). SB3 has no per-task networks.
- **mtrl**: the rows of ``benchmarks/results/sac_recipes/results.jsonl`` of the same seed (the
  matched shared network ``base`` and the best recipe, ``ensemble-bf16`` = agents/mtsac-fast.yaml),
  produced by ``sac_recipes.py`` under the same protocol on this machine.

    .venv/bin/python benchmarks/sac_peers.py --seeds 0 --minutes 30
    .venv/bin/python benchmarks/sac_peers.py --plot-only

One JSON line per SB3 run in ``OUT/results.jsonl`` (skipped when there); writes ``OUT/table.md``
(training minutes to first reach each success level, per library) and ``OUT/curves.png``. Run
nothing else meanwhile: the comparison is in wall-clock time. Budgets differ in kind: SB3 stops
after ``--minutes`` of *training* time, while ``sac_recipes.py`` stops mtrl after ``--minutes`` of
wall-clock with its evaluations inside (a 60-minute mtrl run trains ~51 minutes); the table's
"training min" column and the minutes-to-level columns are training time on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from peers import sb3_sac_curve  # noqa: E402
from runlock import run_once  # noqa: E402
from sac_recipes import load  # noqa: E402

TASKSET = "metaworld/reach4"
SAC = dict(hidden=[256, 256], batch=512, lr=3e-4, gamma=0.99, tau=0.005, learning_starts=5_000, buffer=400_000,
           train_freq=2, gradient_steps=1)
MTRL_ROWS = {"base": "mtrl MT-SAC, shared 256x2 (matched)",
             "ensemble-bf16": "mtrl MT-SAC, per-task nets, bf16, 100k buffer",
             "ensemble-bf16-buf1m": "mtrl MT-SAC, session-8 mtsac-fast (per-task nets, bf16, 1M buffer)",
             "fast-ln-amin-ema": "mtrl MT-SAC, agents/mtsac-fast.yaml (+ LN critics, alpha floor, averaged actor)"}
LEVELS = (0.4, 0.5, 0.6, 0.7, 0.8)


def run_sb3(seed: int, minutes: float, eval_every: int, episodes: int) -> list[list]:
    """SB3 SAC on reach4 until ``minutes`` of training wall-clock; returns [[env steps, s, success, per task], ...]."""
    from mtrl.interop import sb3_vec_env

    return sb3_sac_curve(sb3_vec_env(TASKSET, envs_per_task=1, seed=seed), TASKSET, SAC, seed, eval_every, episodes,
                         minutes=minutes)


def first_reach(curve: np.ndarray, level: float) -> float | None:
    """Training minutes at the first evaluation with mean success >= level (None: never)."""
    hit = np.nonzero(curve[:, 2] >= level - 1e-9)[0]
    return float(curve[hit[0], 1] / 60) if len(hit) else None


def report(out: Path, seeds: list[int]) -> list[str]:
    rows = {f"sb3_s{r['seed']}": ("Stable-Baselines3 SAC (matched)", r) for r in load(out / "results.jsonl")}
    for r in load(ROOT / "benchmarks/results/sac_recipes/results.jsonl"):
        if r["variant"] in MTRL_ROWS and r["seed"] in seeds:
            rows[f"{r['variant']}_s{r['seed']}_{r['minutes']}"] = (MTRL_ROWS[r["variant"]], r)
    lines = ["| library | seed | budget (min) | training min | env steps | env steps/s | final | best | " +
             " | ".join(f"min to {lv:.1f}" for lv in LEVELS) + " |", "|---" * (8 + len(LEVELS)) + "|"]
    curves = []
    for name, r in sorted(rows.values(), key=lambda x: (x[0], x[1]["seed"])):
        c = np.asarray([row[:3] for row in r["curve"]], dtype=float)
        if not len(c):
            continue
        curves.append((f"{name} s{r['seed']}", c))
        reach = [first_reach(c, lv) for lv in LEVELS]
        lines.append(f"| {name} | {r['seed']} | {r['minutes']:g} | {c[-1, 1] / 60:.1f} | {c[-1, 0]:,.0f} | "
                     f"{c[-1, 0] / max(c[-1, 1], 1e-9):.0f} | "
                     f"{c[-1, 2]:.2f} | {c[:, 2].max():.2f} | "
                     + " | ".join("-" if m is None else f"{m:.1f}" for m in reach) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for label, c in curves:
            ax.plot(c[:, 1] / 60, c[:, 2], label=label)
        ax.set_xlabel("training wall-clock (minutes, evaluation excluded)")
        ax.set_ylabel("mean deterministic success (reach4)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "curves.png", dpi=110)
    except ImportError:
        pass
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--eval-every", type=int, default=20_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/sac_peers"))
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.plot_only:
        for seed in args.seeds:
            def run(seed=seed) -> dict:
                t0, load0 = time.time(), os.getloadavg()[0]
                curve = run_sb3(seed, args.minutes, args.eval_every, args.eval_episodes)
                return {"lib": "sb3", "seed": seed, "minutes": args.minutes, "settings": SAC, "curve": curve,
                        "wall_s": round(time.time() - t0, 1), "load_avg_start": load0,
                        "load_avg_end": os.getloadavg()[0]}

            run_once(out, f"sb3_s{seed}_{args.minutes:g}min",
                     lambda r, seed=seed: (r["seed"], r["minutes"]) == (seed, args.minutes), run)
    print("\n".join(report(out, args.seeds)))
    print(json.dumps({"table": str(out / "table.md"), "png": str(out / "curves.png")}))


if __name__ == "__main__":
    main()
