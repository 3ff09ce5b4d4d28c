"""Curricula on the MiniGrid ladder: MT-PPO with each task scheduler, several seeds.

Each (curriculum, seed) is one ``mtrl train`` run with deterministic evaluations every
``--eval-every`` env steps, then ``mtrl eval --episodes N``. Every finished run appends one JSON
line to ``OUT/results.jsonl`` and is skipped when the script runs again; an interrupted run is
resumed from its checkpoint. So the benchmark can span sessions:

    .venv/bin/python benchmarks/curriculum_ladder.py                 # all curricula x seeds 0-2
    .venv/bin/python benchmarks/curriculum_ladder.py --curricula uniform plr --seeds 0
    .venv/bin/python benchmarks/curriculum_ladder.py --plot-only     # table + PNG from what is there
    .venv/bin/python benchmarks/curriculum_ladder.py --env ladder2   # the second ladder (two 3-rung chains)

Prints a JSON summary; writes ``OUT/curves.png`` (success per target task against env steps,
mean over seeds, one panel per target) and ``OUT/table.md`` (other budgets than 2M steps:
``OUT/curves_<steps>.png``, ``OUT/table_<steps>.md``, e.g. ``table_5M.md``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from runlock import run_once

ROOT = Path(__file__).resolve().parent.parent
CURRICULA = ["uniform", "success", "learning-progress", "mastering-rate", "plr", "camrl", "camrl-shared"]


def load_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def label(curr: str, args) -> str:
    """The result's name: the curriculum, with ``+steps`` when slots follow the weights."""
    return curr + ("+steps" if args.task_share == "steps" else "")


def run_one(curr: str, seed: int, args, out: Path) -> dict:
    run_dir = out / "runs" / f"{label(curr, args)}_s{seed}"
    mtrl = [sys.executable, "-m", "mtrl.cli"]
    t0 = time.time()
    if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("step_*.pt")):
        cmd = [*mtrl, "train", "--resume", str(run_dir), f"total_steps={args.steps}"]
    else:
        cmd = [*mtrl, "train", f"envs/minigrid-{args.env}.yaml", f"agents/mtppo-{curr}.yaml", f"total_steps={args.steps}",
               f"seed={seed}", f"runners={args.runners}", f"run_dir={run_dir}", f"eval_every={args.eval_every}",
               f"eval_episodes={args.eval_episodes_during}", "log_every=5", f"task_share={args.task_share}"]
    print(f"== {curr} seed {seed}: {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    subprocess.run([*mtrl, "eval", str(run_dir), "--episodes", str(args.eval_episodes), "--trust"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    ev = json.loads((run_dir / "eval.json").read_text())
    stoch = stochastic_eval(run_dir, args.eval_episodes)
    curve = [json.loads(line) for line in (run_dir / "eval_history.jsonl").read_text().splitlines() if line]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"curriculum": label(curr, args), "seed": seed, "steps": args.steps, "wall_s": round(time.time() - t0, 1),
            "final_success": {k: v["success"] for k, v in ev["tasks"].items()},
            "eval_episodes": args.eval_episodes, "window_success": summary["success"], "stochastic_success": stoch,
            "curve": [{"step": c["step"], "success": c["success"]} for c in curve], "run_dir": str(run_dir)}


def stochastic_eval(run_dir: Path, episodes: int) -> dict[str, float]:
    """Final success with sampled actions (``mtrl eval --stochastic``): argmax MiniGrid policies
    can loop forever where the trained, sampling policy does not."""
    subprocess.run([sys.executable, "-m", "mtrl.cli", "eval", str(run_dir), "--episodes", str(episodes),
                    "--stochastic", "--trust"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    ev = json.loads((run_dir / "eval_stochastic.json").read_text())
    return {k: v["success"] for k, v in ev["tasks"].items()}


def backfill(res_path: Path, episodes: int) -> None:
    """Add ``stochastic_success`` to result lines written before it existed."""
    rows = load_results(res_path)
    for r in rows:
        run_dir = Path(r["run_dir"])
        if "stochastic_success" not in r and run_dir.is_dir():
            done = run_dir / "eval_stochastic.json"
            r["stochastic_success"] = ({k: v["success"] for k, v in json.loads(done.read_text())["tasks"].items()}
                                       if done.is_file() else stochastic_eval(run_dir, episodes))
    res_path.write_text("".join(json.dumps(r) + "\n" for r in rows))


#: Sets whose targets are not the children of their task graph (there the graph leads from a
#: target to harder tasks, for mastering-rate).
LADDER2_TARGETS = ["KeyCorridorS3R1", "KeyCorridorS3R2", "UnlockPickup", "BlockedUnlockPickup"]
TARGETS = {"distract": ["DoorKey-6x6", "Unlock", "KeyCorridorS3R1"], "sink": LADDER2_TARGETS, "interfere": LADDER2_TARGETS}


def targets_of(env: str) -> list[str]:
    """The target tasks: :data:`TARGETS`, else those with a parent in the env preset's task graph."""
    import yaml

    if env in TARGETS:
        return TARGETS[env]

    graph = yaml.safe_load((ROOT / f"envs/minigrid-{env}.yaml").read_text())["task_graph"]
    return list(dict.fromkeys(c for children in graph.values() for c in children))


def report(results: list[dict], out: Path, env: str = "ladder", suffix: str = "") -> dict:
    """Mean final success per task and curriculum (``table{suffix}.md``), the targets per seed
    (``table_targets{suffix}.md``) and a PNG of target-task curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = targets_of(env)
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["curriculum"], []).append(r)
    table: dict[str, dict] = {}
    tasks = list(results[0]["final_success"]) if results else []
    for c, rs in by.items():
        row: dict[str, Any] = {"seeds": len(rs), "wall_s_mean": float(np.mean([r["wall_s"] for r in rs]))}
        for kind, key in (("deterministic", "final_success"), ("stochastic", "stochastic_success"),
                          ("window", "window_success")):
            have = [r[key] for r in rs if key in r]
            if not have:
                continue
            fin = {t: float(np.mean([h[t] for h in have])) for t in tasks}
            row[kind] = {"mean": float(np.mean(list(fin.values()))), "target_mean": float(np.mean([fin[t] for t in targets])),
                         "targets_at_0.9": int(sum(fin[t] >= 0.9 for t in targets)), "per_task": fin}
        table[c] = row
    lines = ["| curriculum | seeds | eval | mean | target mean | " + " | ".join(tasks) + " |",
             "|---" * (5 + len(tasks)) + "|"]
    for c, row in table.items():
        for kind in ("deterministic", "stochastic", "window"):
            if kind in row:
                v = row[kind]
                lines.append(f"| {c} | {row['seeds']} | {kind} | {v['mean']:.2f} | {v['target_mean']:.2f} | "
                             + " | ".join(f"{v['per_task'][t]:.2f}" for t in tasks) + " |")
    (out / f"table{suffix}.md").write_text("\n".join(lines) + "\n")
    # per seed, the targets only: the spread that the means above hide
    kinds = (("sampled", "stochastic_success"), ("window", "window_success"), ("deterministic", "final_success"))
    lines = [f"Targets, in this order: {', '.join(targets)}.", "",
             "| curriculum, seed | " + " | ".join(k for k, _ in kinds) + " |", "|---" * (1 + len(kinds)) + "|"]
    for c, rs in by.items():
        for r in sorted(rs, key=lambda r: r["seed"]):
            cells = [" ".join(f"{r[key][t]:.2f}" for t in targets) if key in r else "-" for _, key in kinds]
            lines.append(f"| {c} {r['seed']} | " + " | ".join(cells) + " |")
    (out / f"table_targets{suffix}.md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, len(targets), figsize=(4 * len(targets), 3.4), sharey=True)
    for ax, t in zip(np.atleast_1d(axes), targets):
        for c, rs in by.items():
            steps = sorted({p["step"] for r in rs for p in r["curve"]})
            ys = [np.mean([p["success"][t] for r in rs for p in r["curve"] if p["step"] == s]) for s in steps]
            ax.plot(steps, ys, label=f"{c} ({len(rs)})")
        ax.set_title(t)
        ax.set_xlabel("env steps")
        ax.set_ylim(-0.05, 1.05)
    np.atleast_1d(axes)[0].set_ylabel("deterministic success")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"curves{suffix}.png", dpi=90)
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--curricula", nargs="+", default=CURRICULA)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=2_000_000)
    p.add_argument("--runners", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=250_000)
    p.add_argument("--eval-episodes-during", type=int, default=10)
    p.add_argument("--eval-episodes", type=int, default=20, help="episodes per task in the final `mtrl eval`")
    p.add_argument("--task-share", default="episodes", choices=["episodes", "steps"],
                   help="what the weights set (config task_share); 'steps' runs are named CURRICULUM+steps")
    p.add_argument("--env", default="ladder", choices=["ladder", "ladder2", "ladder3", "crowd", "distract", "sink", "interfere"], help="envs/minigrid-<env>.yaml")
    p.add_argument("--out", default=None, help="default: benchmarks/results/curriculum_<env>")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--backfill", action="store_true", help="add stochastic evaluations to older result lines")
    args = p.parse_args()
    out = Path(args.out or ROOT / f"benchmarks/results/curriculum_{args.env}")
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.jsonl"
    if args.backfill:
        backfill(res_path, args.eval_episodes)
    if not args.plot_only:
        for seed in args.seeds:  # seeds outermost: a partial benchmark still compares every curriculum
            for curr in args.curricula:
                key = (label(curr, args), seed, args.steps)
                run_once(out, f"{key[0]}_s{seed}_{args.steps}",
                         lambda r, key=key: (r["curriculum"], r["seed"], r["steps"]) == key,
                         lambda curr=curr, seed=seed: run_one(curr, seed, args, out))
    results = [r for r in load_results(res_path) if r["steps"] == args.steps]
    if results:
        suffix = "" if args.steps == 2_000_000 else f"_{args.steps / 1e6:g}M"
        print(json.dumps(report(results, out, args.env, suffix), indent=2))


if __name__ == "__main__":
    main()
