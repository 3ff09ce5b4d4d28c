"""Multi-task architectures with MT-SAC on Meta-World, with and without PCGrad (issue 14).

Each (set, architecture, surgery, seed) is one ``mtrl train ENV agents/mtsac.yaml sac.arch=A
surgery=S`` run to a fixed env-step budget (``--steps``, all tasks together), evaluated every
``--eval-every`` steps; architectures differ in update cost, so the budget is in env steps, and
each row also has the training wall-clock. The recipe is the faster one a CPU user would pick
(``--recipe``: 256x2 trunks, one update per two vector steps) unless told otherwise. Every
finished run appends a JSON line to ``OUT/<set>/results.jsonl`` and is skipped when the script
runs again, so the comparison can span sessions; a run stopped part-way (SIGTERM to this script or
to its ``mtrl.cli train`` process: it checkpoints with its replay buffer) continues from there
(``sac_recipes.run_one``).

    .venv/bin/python benchmarks/archs_metaworld.py                                   # everything, seeds 0-2
    .venv/bin/python benchmarks/archs_metaworld.py --sets reach4 --archs mlp moore --seeds 0
    .venv/bin/python benchmarks/archs_metaworld.py --plot-only

A surgery method takes its options after a colon (``cagrad:c=0.9`` -> ``surgery=cagrad
surgery_args.c=0.9``). The surgery comparison of issue 13 on the shared-network form of the
``mtsac-fast`` recipe with per-task reward normalisation (``SURGERY_RECIPE``):

    .venv/bin/python benchmarks/archs_metaworld.py --sets reach4 --archs mlp \
        --surgery mean pcgrad cagrad:c=0.9 nashmtl --recipe-name surgery --out benchmarks/results/surgery_reach4_rnorm

Writes ``OUT/<set>/table.md`` and ``OUT/<set>/curves.png`` (mean success against wall-clock and
against env steps), and ``OUT/<set>/table_archs.md`` and ``OUT/<set>/curves_steps.png`` (per
architecture and surgery: each seed, the mean with a bootstrap CI, per task; curves in env steps).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from runlock import run_once
from sac_recipes import ROOT, load, run_one, summarise

SETS = {"reach4": "envs/reach4.yaml", "manip4": "envs/manip4.yaml", "mt10": "envs/mt10.yaml"}
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


def arch_of(row: dict) -> tuple[str, str]:
    """``(arch, surgery spec)`` of a result row, from its variant label (``moore+pcgrad``, ``mlp``)."""
    arch, _, surgery = row["variant"].partition("+")
    return arch, surgery or "mean"


def arch_table(rows: list[dict], out: Path, last: int = 3, reps: int = 2000) -> str:
    """Per architecture and surgery (step-budgeted runs only, one per seed): the final success of
    each seed, their mean with a 95% stratified bootstrap CI over the runs x tasks matrix of final
    per-task success (rliable, Agarwal et al. NeurIPS 2021), the mean over each run's ``last``
    evaluations (the evaluation-to-evaluation swing with 5 episodes per task is +-0.15), the final
    per-task mean, the final evaluation return (mean over tasks, with the same kind of CI: it tells
    learning apart where success is still 0 everywhere) and the training env steps/s. Writes
    ``OUT/table_archs.md`` and ``OUT/curves_steps.png`` (mean success and mean return against env
    steps, one column per surgery method)."""
    from mtrl.compare import interval_estimates

    groups: dict[tuple[str, str], dict[int, dict]] = {}
    for r in rows:
        if r.get("minutes") is None and r["curve"]:
            group = groups.setdefault(arch_of(r), {})
            same = group.get(r["seed"])  # a seed run again: the later row, if it is the same run
            if same is not None and (same["overrides"], same["total_steps"]) != (r["overrides"], r["total_steps"]):
                raise SystemExit(f"{out}: {'+'.join(arch_of(r))} seed {r['seed']} ran with two recipes or budgets "
                                 f"({same['overrides']}, {same['total_steps']} vs {r['overrides']}, {r['total_steps']}); "
                                 "keep each recipe in its own --out")
            group[r["seed"]] = r
    if not groups:
        return "(no step-budgeted runs)"
    tasks = list(next(iter(next(iter(groups.values())).values()))["per_task_final"])
    order = {a: i for i, a in enumerate(ARCHS)}
    keys = sorted(groups, key=lambda k: (k[1] != "mean", k[1], order.get(k[0], 99), k[0]))
    matrices = {k: np.array([[r["per_task_final"][t] for t in tasks] for r in groups[k].values()]) for k in keys}
    point, ci = interval_estimates({f"{a}+{s}": m for (a, s), m in matrices.items()}, reps)  # [IQM, mean]
    with_ret = [k for k in keys if all("per_task_return_final" in r for r in groups[k].values())]
    ret_point, ret_ci = interval_estimates(
        {f"{a}+{s}": np.array([[r["per_task_return_final"][t] for t in tasks] for r in groups[(a, s)].values()])
         for a, s in with_ret}, reps) if with_ret else ({}, {})
    head = ["arch", "surgery", "seeds", "final success per seed", "mean [95% CI]",
            f"mean of the last {last} evaluations", "per task (final, mean over seeds)",
            "final return, mean over tasks [95% CI]", "per task return (final, mean over seeds)", "env steps/s (training, median over seeds)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in keys:
        rs = [groups[k][s] for s in sorted(groups[k])]
        curves = [np.asarray(r["curve"], dtype=float) for r in rs]
        name = f"{k[0]}+{k[1]}"
        lo, hi = ci[name][0, 1], ci[name][1, 1]
        interval = f"[{lo:.2f}, {hi:.2f}]" if len(rs) > 1 else "(1 seed: no CI)"
        per_task = ", ".join(f"{t.removesuffix('-v3')} {v:.2f}" for t, v in zip(tasks, matrices[k].mean(0)))
        ret, ret_tasks = "n/a", "n/a"
        if name in ret_point:
            ret_tasks = ", ".join(f"{t.removesuffix('-v3')} {np.mean([r['per_task_return_final'][t] for r in rs]):.0f}"
                                  for t in tasks)
            ret = f"{ret_point[name][1]:.0f}" + (f" [{ret_ci[name][0, 1]:.0f}, {ret_ci[name][1, 1]:.0f}]" if len(rs) > 1 else "")
        lines.append(
            f"| {k[0]} | {k[1]} | {', '.join(str(s) for s in sorted(groups[k]))} | "
            f"{' / '.join(f'{c[-1, 2]:.2f}' for c in curves)} | **{point[name][1]:.2f}** {interval} | "
            f"{np.mean([c[-last:, 2].mean() for c in curves]):.2f} | {per_task} | {ret} | {ret_tasks} | "
            f"{np.median([c[-1, 0] / max(c[-1, 1], 1e-9) for c in curves]):.0f} |")
    (out / "table_archs.md").write_text("\n".join(lines) + "\n")
    _plot_steps({k: [np.asarray(groups[k][s]["curve"], dtype=float) for s in sorted(groups[k])] for k in keys},
                {k: [np.asarray(groups[k][s]["return_curve"], dtype=float) for s in sorted(groups[k])] for k in with_ret},
                out / "curves_steps.png", out.name)
    return "\n".join(lines)


def _plot_steps(curves: dict[tuple[str, str], list[np.ndarray]], returns: dict[tuple[str, str], list[np.ndarray]],
                path: Path, set_name: str) -> None:
    """Mean success over seeds against env steps (``[step, wall_s, success]`` curves), from the first
    evaluation on (no value is drawn before it), one panel per surgery method, one line per
    architecture; below, when ``returns`` has ``[step, mean return]`` curves for every line drawn
    above, the mean return (a return panel with only the newer runs in it would read as a ranking)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    surgeries = sorted({s for _, s in curves}, key=lambda s: (s != "mean", s))
    with_returns = bool(returns) and set(returns) == set(curves)
    panels = [(curves, 2, "mean deterministic success (seeds)")] + ([(returns, 1, "mean evaluation return")]
                                                                     if with_returns else [])
    fig, axes = plt.subplots(len(panels), len(surgeries), figsize=(5.5 * len(surgeries), 4 * len(panels)),
                             squeeze=False, sharey="row")
    for row, (data, col, ylabel) in zip(axes, panels):
        for ax, surgery in zip(row, surgeries):
            for (arch, s), cs in data.items():
                if s != surgery:
                    continue
                grid = np.linspace(max(c[0, 0] for c in cs), min(c[-1, 0] for c in cs), 40)
                color = f"C{ARCHS.index(arch)}" if arch in ARCHS else None  # one colour per arch in every panel
                ax.plot(grid, np.mean([np.interp(grid, c[:, 0], c[:, col]) for c in cs], 0),
                        label=f"{arch} ({len(cs)})", color=color)
            ax.set_title(f"surgery={surgery}")
            ax.set_xlabel("env steps (all tasks)")
            if col == 2:
                ax.set_ylim(-0.02, 1.02)
            ax.legend(fontsize=8)
        row[0].set_ylabel(ylabel)
    fig.suptitle(f"MT-SAC architectures on Meta-World {set_name} (number of seeds in brackets)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def same_run(row: dict, label: str, seed: int, overrides: list[str], minutes: float | None, steps: int) -> bool:
    """Whether result ``row`` is the run asked for: same label, seed, overrides and budget (a
    step-budgeted row does not stand in for a time-budgeted run, nor one budget for another)."""
    return (row["variant"], row["seed"], row["overrides"], row.get("minutes"), row["total_steps"]) == (
        label, seed, overrides, minutes, steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["reach4", "manip4"], choices=list(SETS))
    p.add_argument("--archs", nargs="+", default=ARCHS)
    p.add_argument("--surgery", nargs="+", default=["mean", "pcgrad"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--minutes", type=float, default=None,
                   help="also stop each run after this much wall-clock (then its row is time-budgeted: table.md, "
                        "not table_archs.md)")
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
                                 lambda r, label=label, seed=seed, overrides=overrides: same_run(
                                     r, label, seed, overrides, args.minutes, args.steps),
                                 lambda label=label, seed=seed, overrides=overrides, out=out, env=SETS[name]: run_one(
                                     label, seed, overrides, out, args.minutes, args.eval_every, args.eval_episodes,
                                     env=env, total_steps=args.steps))
        if load(results):
            print(json.dumps({name: summarise(load(results), out, f"MT-SAC architectures on Meta-World {name}")},
                             indent=2))
            print(arch_table(load(results), out))


if __name__ == "__main__":
    main()
