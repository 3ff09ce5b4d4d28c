"""Learning benchmark: MT-PPO on MiniGrid MT5 vs single-task PPO on each task.

Runs, one after another on this machine (in-process sampling, 1 learner thread):

1. MT-PPO on ``minigrid/MT5`` for ``--steps`` env steps in total (all tasks together);
2. single-task PPO (same network and hyper-parameters, no task id needed) on each task for
   ``--steps / 5`` env steps, i.e. the same number of steps per task.

Per-task success is read back from the runs' TensorBoard files (windowed success over the
last 20 episodes of each task). Writes ``<out>/minigrid_mt5.json`` and ``<out>/minigrid_mt5.png``
and prints the JSON. Usage: ``python benchmarks/learn_minigrid.py [--steps 1500000] [--out benchmarks/out]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def curves(run_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """``success/window/<task>`` scalars of a run: ``{task: (steps, values)}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    ea.Reload()
    out = {}
    for tag in ea.Tags()["scalars"]:
        if tag.startswith("success/window/"):
            ev = ea.Scalars(tag)
            out[tag.removeprefix("success/window/")] = ([e.step for e in ev], [e.value for e in ev])
    return out


def run(taskset: list[str] | str, steps: int, run_dir: Path, envs_per_task: int, extra: list[str]) -> dict:
    from mtrl.config import build_config
    from mtrl.train import train

    base = ["agents/mtppo.yaml"]
    ts = ([f"taskset={taskset}"] if isinstance(taskset, str)
          else ["taskset=custom", f"tasks=[{','.join(taskset)}]"])
    cfg = build_config(["envs/minigrid-mt5.yaml", *base],
                       [*ts, f"total_steps={steps}", f"envs_per_task={envs_per_task}", f"run_dir={run_dir}",
                        "checkpoint_every=0", "log_every=2", *extra])
    t0 = time.time()
    train(cfg)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"wall_s": round(time.time() - t0, 1), "steps": summary["step"], "final_success": summary["success"],
            "mean_success": summary["mean_success"], "curves": curves(run_dir)}


def first_step_at(curve: tuple[list[int], list[float]], level: float) -> int | None:
    for s, v in zip(*curve):
        if v >= level:
            return s
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1_500_000, help="MT-PPO env steps over all tasks")
    ap.add_argument("--envs-per-task", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-single", action="store_true", help="only the multi-task run")
    args = ap.parse_args()
    from mtrl.envs import get

    tasks = get("minigrid/MT5").train
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    extra = [f"seed={args.seed}"]
    mt = run("minigrid/MT5", args.steps, out / "runs" / "mtppo_mt5", args.envs_per_task, extra)
    single = {}
    if not args.skip_single:
        for t in tasks:
            single[t.name] = run([t.env_id], args.steps // len(tasks), out / "runs" / f"ppo_{t.name}",
                                 args.envs_per_task, extra)
    mean_curve = mt["curves"]["mean"]
    result = {
        "taskset": "minigrid/MT5", "seed": args.seed, "mtppo": {
            "steps": mt["steps"], "wall_s": mt["wall_s"], "final_mean_success": round(mt["mean_success"], 3),
            "final_success": mt["final_success"], "steps_to_0.9_mean_success": first_step_at(mean_curve, 0.9)},
        "single_task_ppo": {name: {"steps": r["steps"], "wall_s": r["wall_s"],
                                   "final_success": round(r["mean_success"], 3),
                                   "steps_to_0.9": first_step_at(r["curves"]["mean"], 0.9)}
                            for name, r in single.items()},
    }
    if single:
        result["single_task_ppo_mean_final_success"] = round(float(np.mean([r["mean_success"] for r in single.values()])), 3)
        result["single_task_ppo_total_wall_s"] = round(sum(r["wall_s"] for r in single.values()), 1)
    (out / "minigrid_mt5.json").write_text(json.dumps(result, indent=2))
    plot(mt, single, [t.name for t in tasks], out / "minigrid_mt5.png")
    print(json.dumps(result, indent=2))


def plot(mt: dict, single: dict, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = len(names)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    s, v = mt["curves"]["mean"]
    ax.plot(np.asarray(s) / T, v, label="MT-PPO (one policy, 5 tasks)", lw=2, color="k")
    if single:
        grid = np.linspace(0, max(max(r["curves"]["mean"][0]) for r in single.values()), 200)
        ys = [np.interp(grid, *r["curves"]["mean"], left=0.0) for r in single.values()]
        ax.plot(grid, np.mean(ys, 0), label="single-task PPO (mean of 5 policies)", lw=2, ls="--", color="tab:red")
    ax.axhline(0.9, color="gray", lw=0.8, ls=":")
    ax.set(xlabel="env steps per task", ylabel="mean success (last 20 episodes per task)",
           title="MiniGrid MT5: mean success", ylim=(-0.02, 1.02))
    ax.legend(loc="lower right")
    ax = axes[1]
    for i, n in enumerate(names):
        c = f"C{i}"
        ax.plot(np.asarray(mt["curves"][n][0]) / T, mt["curves"][n][1], color=c, label=f"{n} (MT-PPO)")
        if n in single:
            ax.plot(*single[n]["curves"]["mean"], color=c, ls="--", alpha=0.7)
    ax.set(xlabel="env steps per task", ylabel="success", title="per task (dashed: single-task PPO)",
           ylim=(-0.02, 1.02))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
