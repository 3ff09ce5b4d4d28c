"""Learning benchmark: MT-SAC on the Meta-World ``reach4`` subset, several seeds, per-task curves.

Runs ``mtrl train envs/reach4.yaml agents/mtsac.yaml`` for each seed (``--parallel`` at a
time, each in its own process with 1 learner thread), evaluating every ``--eval-every`` env
steps with deterministic actions (success = success at any step of an episode). Reads the
runs' ``eval_history.jsonl``, writes ``<out>/sac_reach4.json`` and ``<out>/sac_reach4.png``
(per-task success: mean over seeds and each seed) and prints the JSON.

Usage: ``python benchmarks/learn_sac_metaworld.py [--steps 400000] [--seeds 0 1 2] [--parallel 2]
[--agent agents/mtsac.yaml] [--label mtsac] [--out benchmarks/results] [-- extra key=value overrides]``.
With ``--agent agents/mtsac-pcgrad.yaml --label pcgrad`` (etc.) it gives the gradient-surgery
learning comparison on the same subset; outputs are named ``<label>_reach4.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400_000, help="env steps per seed, all 4 tasks together")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=20_000)
    ap.add_argument("--eval-episodes", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--agent", default="agents/mtsac.yaml", help="agent preset (e.g. agents/mtsac-pcgrad.yaml)")
    ap.add_argument("--label", default="sac", help="names the runs and outputs")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = ap.parse_args()
    runs_dir = args.out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[int, subprocess.Popen, float, Path]] = []
    walls: dict[int, float] = {}
    pending = list(args.seeds)
    while pending or procs:
        while pending and len(procs) < args.parallel:
            s = pending.pop(0)
            run_dir = runs_dir / f"{args.label}_reach4_s{s}_{int(time.time())}"
            cmd = [sys.executable, "-m", "mtrl.cli", "train", "envs/reach4.yaml", args.agent,
                   f"total_steps={args.steps}", f"seed={s}", f"run_dir={run_dir}", f"eval_every={args.eval_every}",
                   f"eval_episodes={args.eval_episodes}", "checkpoint_every=0", "log_every=20", *args.overrides]
            log = open(run_dir.with_suffix(".log"), "w")
            procs.append((s, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), time.time(), run_dir))
        time.sleep(5)
        for item in list(procs):
            s, p, t0, run_dir = item
            if p.poll() is not None:
                if p.returncode != 0:
                    sys.exit(f"seed {s} failed (exit {p.returncode}); see {run_dir.with_suffix('.log')}")
                walls[s] = time.time() - t0
                procs.remove(item)
                print(f"seed {s} done in {walls[s]:.0f} s", flush=True)
    histories = {}
    for s in args.seeds:
        run_dir = sorted(p for p in runs_dir.glob(f"{args.label}_reach4_s{s}_*") if p.is_dir())[-1]
        histories[s] = [json.loads(line) for line in (run_dir / "eval_history.jsonl").read_text().splitlines()]
    tasks = list(histories[args.seeds[0]][0]["success"])
    steps = [h["step"] for h in histories[args.seeds[0]]]
    per_task = {t: np.array([[h["success"][t] for h in histories[s]] for s in args.seeds]) for t in tasks}
    mean_curve = np.mean([per_task[t] for t in tasks], axis=0)  # [seeds, evals]
    final = {t: float(per_task[t][:, -1].mean()) for t in tasks}
    result = {
        "taskset": "metaworld/reach4", "agent": args.agent, "seeds": args.seeds, "steps_per_seed": args.steps,
        "overrides": args.overrides, "eval_episodes_per_task": args.eval_episodes,
        "wall_s_per_seed": {str(s): round(w) for s, w in walls.items()}, "parallel": args.parallel,
        "final_success_per_task_mean_over_seeds": final,
        "final_mean_success_per_seed": {str(s): round(float(mean_curve[i, -1]), 3) for i, s in enumerate(args.seeds)},
        "final_mean_success": round(float(mean_curve[:, -1].mean()), 3),
        "best_mean_success_over_evals": round(float(mean_curve.mean(0).max()), 3),
        "eval_steps": steps, "mean_curve_over_seeds": np.round(mean_curve.mean(0), 3).tolist(),
    }
    (args.out / f"{args.label}_reach4.json").write_text(json.dumps(result, indent=2))
    plot(steps, per_task, mean_curve, args.seeds, args.out / f"{args.label}_reach4.png", args.label)
    print(json.dumps(result, indent=2))


def plot(steps, per_task, mean_curve, seeds, path: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(per_task)
    fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(4 * (len(tasks) + 1), 3.4), sharey=True)
    x = np.asarray(steps) / len(tasks)
    for ax, t in zip(axes, tasks):
        for i, _ in enumerate(seeds):
            ax.plot(x, per_task[t][i], lw=0.8, alpha=0.5)
        ax.plot(x, per_task[t].mean(0), lw=2, color="k")
        ax.set(title=t, xlabel="env steps per task", ylim=(-0.03, 1.03))
    axes[0].set_ylabel("eval success (any step)")
    ax = axes[-1]
    for i, s in enumerate(seeds):
        ax.plot(x, mean_curve[i], lw=0.8, alpha=0.6, label=f"seed {s}")
    ax.plot(x, mean_curve.mean(0), lw=2, color="k", label="mean")
    ax.set(title="mean over tasks", xlabel="env steps per task")
    ax.legend(fontsize=7)
    fig.suptitle(f"{label} on Meta-World reach4 ({len(seeds)} seeds; thin: seeds, black: mean)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
