"""Learning from demonstrations only (no environment reward): BC, GAIL, AIRL, MH-AIRL on MiniGrid.

Makes expert demos once (``mtrl demos``, labelled and unlabelled), then for every method x labels
x seed one ``mtrl train`` run and a final ``mtrl eval --episodes N``. Each finished run appends
one JSON line to ``OUT/results.jsonl`` and is skipped when the script runs again (interrupted
runs resume), so the benchmark can span sessions:

    .venv/bin/python benchmarks/imitation_minigrid.py                      # MT5, 3 seeds
    .venv/bin/python benchmarks/imitation_minigrid.py --methods airl --labels unlabelled --seeds 0
    .venv/bin/python benchmarks/imitation_minigrid.py --plot-only
    .venv/bin/python benchmarks/imitation_minigrid.py --taskset metaworld/reach4 --methods bc mhairl-bc \
        --labels labelled --steps 200000                    # Meta-World, scripted experts
    .venv/bin/python benchmarks/imitation_minigrid.py --taskset metaworld/reach4 --methods mtppo-reward \
        --steps 200000                                      # control: the same MT-PPO on the env's reward

``mhairl-bc`` is MH-AIRL with Option-BC (``agents/mhairl-bc.yaml``: a warm start and BC steps
beside the adversarial reward). BC learns from the demos directly (its rollouts only measure it); unlabelled BC has no task id
to give the policy, so it trains one policy over observations (``one_hot=false``). GAIL and AIRL
learn from their discriminator's reward; the policy still sees the env's task one-hot.
Prints a JSON summary and writes ``OUT/table.md`` and ``OUT/success.png``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from runlock import load_rows, run_once

ROOT = Path(__file__).resolve().parent.parent
# Benchmark-only method variants: (agent preset, overrides). GAIL on MT-SAC with the positive
# reward -log(1 - D) (DAC's choice where episodes only end by time, as in Meta-World), and with one
# discriminator step per collection round instead of four (a weaker discriminator keeps its reward
# informative for longer).
METHOD_VARIANTS: dict[str, tuple[str, list[str]]] = {
    "gail-mtsac-positive": ("gail-mtsac", ["imitation_args.reward=positive"]),
    "gail-mtsac-positive-d1": ("gail-mtsac", ["imitation_args.reward=positive", "imitation_args.disc_updates=1"]),
}
# Controls that learn from the environment's reward (no demos): the RL underneath the adversarial
# methods at the same budget, so that "GAIL does not learn in 200k steps" can be told apart from
# "MT-PPO does not learn in 200k steps". Their rows are labelled "reward".
REWARD_CONTROLS: dict[str, str] = {"mtppo-reward": "mtppo"}
ENV_PRESET = {"minigrid/MT5": "envs/minigrid-mt5.yaml", "minigrid/MT3": "envs/minigrid-mt3.yaml",
              "metaworld/reach4": "envs/reach4.yaml"}


def demos_path(out: Path, taskset: str, labelled: bool, episodes: int) -> Path:
    from mtrl.imitation.demos import dataset_id

    path = out / "demos" / dataset_id(taskset, labelled)
    if not path.is_dir():
        cmd = [sys.executable, "-m", "mtrl.cli", "demos", taskset, "--episodes", str(episodes),
               "--out", str(out / "demos")] + ([] if labelled else ["--no-labels"])
        subprocess.run(cmd, cwd=ROOT, check=True)
    return path


def run_one(method: str, labels: str, seed: int, args, out: Path) -> dict:
    control = method in REWARD_CONTROLS
    demos = demos_path(out, args.taskset, labels != "unlabelled", args.demo_episodes)  # expert success only, for a control
    run_dir = out / "runs" / f"{method}_{labels}_s{seed}"
    steps = args.bc_steps if method == "bc" else args.steps
    mtrl = [sys.executable, "-m", "mtrl.cli"]
    t0 = time.time()
    if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("step_*.pt")):
        cmd = [*mtrl, "train", "--resume", str(run_dir), f"total_steps={steps}"]
    else:
        extra = ["one_hot=false"] if method == "bc" and labels == "unlabelled" else []
        preset, overrides = METHOD_VARIANTS.get(method, (REWARD_CONTROLS.get(method, method), []))
        if not control:
            overrides = [*overrides, f"demos={demos}"]
        cmd = [*mtrl, "train", ENV_PRESET[args.taskset], f"agents/{preset}.yaml", *overrides,
               f"total_steps={steps}", f"seed={seed}", f"runners={args.runners}", f"run_dir={run_dir}",
               f"eval_every={steps // 5}", "eval_episodes=10", "log_every=5", *extra]
    print(f"== {method} {labels} seed {seed}", flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    for flag in ([], ["--stochastic"]):  # most likely actions, then sampled ones
        subprocess.run([*mtrl, "eval", str(run_dir), "--episodes", str(args.eval_episodes), "--trust", *flag],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    ev = json.loads((run_dir / "eval.json").read_text())
    ev_s = json.loads((run_dir / "eval_stochastic.json").read_text())
    meta = json.loads((demos / "data" / "metadata.json").read_text())
    curve = [json.loads(line) for line in (run_dir / "eval_history.jsonl").read_text().splitlines() if line]
    return {"method": method, "labels": labels, "seed": seed, "steps": steps, "wall_s": round(time.time() - t0, 1),
            "final_success": {k: v["success"] for k, v in ev["tasks"].items()},
            "final_success_stochastic": {k: v["success"] for k, v in ev_s["tasks"].items()},
            "expert_success": meta["expert_success"], "demo_episodes_per_task": meta["episodes_per_task"],
            "curve": [{"step": c["step"], "mean_success": c["mean_success"]} for c in curve]}


def report(results: list[dict], out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for r in results:  # rows from before the stochastic evaluation was recorded: read it from the run
        done = out / "runs" / f"{r['method']}_{r['labels']}_s{r['seed']}" / "eval_stochastic.json"
        if "final_success_stochastic" not in r and done.is_file():
            r["final_success_stochastic"] = {k: v["success"] for k, v in json.loads(done.read_text())["tasks"].items()}
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(f"{r['method']} ({r['labels']})", []).append(r)
    table = {}
    for g, rs in groups.items():
        fin = [np.mean(list(r["final_success"].values())) for r in rs]
        expert = np.mean(list(rs[0]["expert_success"].values()))
        sto = [np.mean(list(r["final_success_stochastic"].values())) for r in rs if "final_success_stochastic" in r]
        table[g] = {"seeds": len(rs), "mean_success": float(np.mean(fin)), "min": float(np.min(fin)),
                    "stochastic": float(np.mean(sto)) if sto else None, "stochastic_seeds": len(sto),
                    "max": float(np.max(fin)), "fraction_of_expert": float(np.mean(fin) / expert),
                    "per_task": {t: float(np.mean([r["final_success"][t] for r in rs])) for t in rs[0]["final_success"]}}
    tasks = list(results[0]["final_success"])
    lines = ["| method (demos) | seeds | mean success [min, max] | of expert | sampled actions (seeds) | "
             + " | ".join(tasks) + " |", "|---" * (5 + len(tasks)) + "|"]
    for g, row in table.items():
        sto = "-" if row["stochastic"] is None else f"{row['stochastic']:.2f} ({row['stochastic_seeds']})"
        lines.append(f"| {g} | {row['seeds']} | {row['mean_success']:.2f} [{row['min']:.2f}, {row['max']:.2f}] | "
                     f"{row['fraction_of_expert']:.2f} | {sto} | "
                     + " | ".join(f"{row['per_task'][t]:.2f}" for t in tasks) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    names = list(table)
    ax.bar(range(len(names)), [table[n]["mean_success"] for n in names],
           yerr=[[max(table[n]["mean_success"] - table[n]["min"], 0.0) for n in names],  # float rounding
                 [max(table[n]["max"] - table[n]["mean_success"], 0.0) for n in names]], capsize=3)
    ax.axhline(np.mean(list(results[0]["expert_success"].values())), color="k", ls="--", label="expert")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("deterministic success (final)")
    ax.set_ylim(0, 1.05)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "success.png", dpi=90)
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--taskset", default="minigrid/MT5", choices=sorted(ENV_PRESET))
    p.add_argument("--methods", nargs="+", default=["bc", "gail", "airl", "mhairl", "mhairl-bc"],
                   help="agent presets (agents/NAME.yaml) or one of " + ", ".join([*METHOD_VARIANTS, *REWARD_CONTROLS])
                   + " (a control: the environment's reward, no demos; runs once per seed, labels 'reward')")
    p.add_argument("--labels", nargs="+", default=["labelled", "unlabelled"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=400_000, help="env steps for GAIL / AIRL")
    p.add_argument("--bc-steps", type=int, default=20_000, help="env steps for BC (its rollouts only measure it)")
    p.add_argument("--demo-episodes", type=int, default=50, help="expert episodes per task")
    p.add_argument("--runners", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--out", default=None, help="default: benchmarks/results/imitation_minigrid (MT5), "
                   "else imitation_<task set>")
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()
    slug = "minigrid" if args.taskset == "minigrid/MT5" else args.taskset.replace("/", "_")
    out = Path(args.out or ROOT / f"benchmarks/results/imitation_{slug}")
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.jsonl"

    if not args.plot_only:
        for seed in args.seeds:
            for labels in dict.fromkeys([*args.labels, "reward"]):
                for method in args.methods:
                    if (labels == "reward") != (method in REWARD_CONTROLS):
                        continue
                    key = (method, labels, seed)
                    run_once(out, f"{method}_{labels}_s{seed}",
                             lambda r, key=key: (r["method"], r["labels"], r["seed"]) == key,
                             lambda key=key: run_one(*key, args, out))
    results = load_rows(res_path)
    if results:
        print(json.dumps(report(results, out), indent=2))


if __name__ == "__main__":
    main()
