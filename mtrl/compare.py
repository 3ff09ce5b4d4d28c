"""`mtrl compare`: aggregate runs over seeds per method, with rliable's IQM and stratified bootstrap CIs.

Runs are grouped by method (``algo`` + head type + architecture + ``reward_norm`` + ``imitation`` +
``surgery`` with its ``surgery_args`` + ``curriculum``, from each run's ``config.yaml``); any other
setting that differs between the runs of one group (bookkeeping such as ``seed``, ``run_dir``, logging
and checkpointing aside) is named in a warning, in ``compare.md`` and under ``config_differences`` in
``compare.json``, so that a mixed group is never silent.
A run's per-task score is its final per-task success, taken from (first found) ``eval.json``
(`mtrl eval`), the last line of ``eval_history.jsonl`` (evaluation during training) or
``summary.json`` (training-episode success). Aggregates follow Agarwal et al.,
"Deep RL at the Edge of the Statistical Precipice" (NeurIPS 2021), via their library rliable:
interquartile mean (IQM) and mean over all (run, task) scores, 95% stratified bootstrap
confidence intervals. Two more columns per method: the *area under the curve* (mean success
averaged over all of a run's evaluations, a learning-speed measure that a single final
evaluation misses; mean and range over runs), and, for runs trained with
``diagnostics_every``, the gradient-conflict summary from TensorBoard: the fraction of
conflicting task pairs averaged over the run, the median condition number and the median
spread of the per-task gradient norms (largest over smallest), per loss.
Writes ``compare.md``, ``compare.json``, ``curves.png`` and ``per_task.png``.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mtrl.errors import MtrlError


def method_label(cfg: dict[str, Any]) -> str:
    algo = cfg.get("algo", "?")
    section = cfg.get("sac" if algo == "mtsac" else "ppo") or {}
    heads, arch = section.get("heads", "single"), section.get("arch", "mlp")
    label = algo + {"multi": "-multihead", "ensemble": "-ensemble", "options": "-options"}.get(heads, "")
    if arch not in ("mlp", "multihead"):
        label += f"-{arch}"
    elif arch == "multihead" and heads != "multi":
        label += "-multihead"
    if cfg.get("reward_norm", "none") != "none":
        label += f"[{cfg['reward_norm']}]"
    if cfg.get("imitation"):
        label += f":{cfg['imitation']}"
    surgery, args = cfg.get("surgery", "mean"), cfg.get("surgery_args") or {}
    args = {k: v for k, v in args.items() if not _is_default(surgery, k, v)}
    if args:  # the parameters that differ from the method's defaults (surgery.defaults)
        surgery += "(" + ",".join(f"{k}={format(v, '.10g') if isinstance(v, float) else v}"
                                  for k, v in sorted(args.items())) + ")"
    label = label if surgery == "mean" else f"{label}+{surgery}"
    curr = cfg.get("curriculum")
    if curr is not None and cfg.get("task_share", "episodes") == "steps":
        curr += "+steps"
    return label if curr is None else f"{label}@{curr}"


def _is_default(surgery: str, key: str, value: Any) -> bool:
    """Whether ``surgery_args.key = value`` is what method ``surgery`` does anyway (False for an
    unknown method or parameter: those stay in the label)."""
    from mtrl import surgery as registry

    try:
        found = registry.defaults(surgery)
    except MtrlError:
        return False
    if key not in found:
        return False
    default = found[key]
    if isinstance(default, tuple) and isinstance(value, list):  # YAML has no tuples
        value = tuple(value)
    return value == default


def final_scores(run: Path) -> tuple[dict[str, float], str]:
    """Per-task final success of a run and where it came from."""
    if (run / "eval.json").is_file():
        data = json.loads((run / "eval.json").read_text())
        return {k: v["success"] for k, v in data["tasks"].items() if v.get("split", "train") == "train"}, "eval.json"
    hist = run / "eval_history.jsonl"
    if hist.is_file() and hist.read_text().strip():
        return json.loads(hist.read_text().strip().splitlines()[-1])["success"], "eval_history.jsonl"
    if (run / "summary.json").is_file():
        return json.loads((run / "summary.json").read_text())["success"], "summary.json"
    raise MtrlError(f"{run} has no eval.json, eval_history.jsonl or summary.json; run `mtrl eval {run}` first")


def eval_curve(run: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean success over tasks vs env steps from the evaluations during training; None if none."""
    hist = run / "eval_history.jsonl"
    text = hist.read_text().strip() if hist.is_file() else ""
    if not text:
        return None
    by_step = {r["step"]: r["mean_success"] for r in map(json.loads, text.splitlines())}  # resumed: keep the last
    steps = np.array(sorted(by_step))
    return steps, np.array([by_step[k] for k in steps])


def eval_returns(run: Path) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Per-task mean undiscounted return of the evaluations during training: ``(steps, {task:
    returns})``, from ``eval_history.jsonl`` (its ``return`` field) or, for runs from before that
    field, the ``eval/return/<task>`` TensorBoard scalars; None if the run has neither. Where every
    task's success is still 0 (a hard set at a small budget), the return still tells learning apart."""
    hist = run / "eval_history.jsonl"
    rows = [json.loads(line) for line in hist.read_text().splitlines() if line.strip()] if hist.is_file() else []
    if rows and all("return" in r for r in rows):
        by_step = {r["step"]: r["return"] for r in rows}  # resumed: keep the last
        steps = np.array(sorted(by_step))
        return steps, {t: np.array([by_step[k][t] for k in steps], dtype=float) for t in by_step[steps[0]]}
    if not any(run.glob("events.out.tfevents.*")):
        return None
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run), size_guidance={"scalars": 0})
    ea.Reload()
    tags = [t for t in ea.Tags()["scalars"] if t.startswith("eval/return/") and t != "eval/return/mean"]
    if not tags:
        return None
    series = {t.removeprefix("eval/return/"): {e.step: e.value for e in ea.Scalars(t)} for t in tags}
    steps = np.array(sorted(set.intersection(*(set(v) for v in series.values()))))
    return steps, {t: np.array([v[k] for k in steps], dtype=float) for t, v in series.items()}


def curve(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """Mean success over tasks vs env steps: evaluations if any, else the training-episode window."""
    ev = eval_curve(run)
    if ev is not None:
        return ev
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run), size_guidance={"scalars": 0})
    ea.Reload()
    if "success/window/mean" not in ea.Tags()["scalars"]:
        return np.zeros(0), np.zeros(0)
    ev = ea.Scalars("success/window/mean")
    return np.array([e.step for e in ev]), np.array([e.value for e in ev])


def conflict_summary(run: Path) -> dict[str, dict[str, float]]:
    """``{loss: {"conflict_fraction": mean over the run, "condition_number": median,
    "norm_spread": median}}`` from the run's ``diag/...`` TensorBoard scalars (loss ``all`` for
    learners with one loss); ``{}`` if none.

    ``norm_spread`` is, at each diagnostics step, the largest per-task gradient norm over the
    smallest (``diag/<loss>/grad_norm/<task>``), median over the run: how unequal the tasks' loss
    scales are (e.g. from unequal reward scales), which the norm-sensitive methods (CAGrad,
    Nash-MTL, MGDA) react to. NaN if the run logged no per-task norms."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run), size_guidance={"scalars": 0})
    ea.Reload()
    tags = ea.Tags().get("scalars", [])
    out: dict[str, dict[str, float]] = {}
    for tag in tags:
        if not (tag.startswith("diag/") and tag.endswith("conflict_fraction")):
            continue
        prefix = tag[: -len("conflict_fraction")]
        loss = prefix[len("diag/"):].strip("/") or "all"
        frac = [e.value for e in ea.Scalars(tag)]
        cond = [e.value for e in ea.Scalars(prefix + "condition_number")] if prefix + "condition_number" in tags else []
        cond = [c for c in cond if np.isfinite(c)]
        out[loss] = {"conflict_fraction": float(np.mean(frac)),
                     "condition_number": float(np.median(cond)) if cond else float("nan"),
                     "norm_spread": _norm_spread(ea, [t for t in tags if t.startswith(prefix + "grad_norm/")
                                                      and t != prefix + "grad_norm/mean"])}
    return out


def _norm_spread(ea: Any, tags: list[str]) -> float:
    """Median over the diagnostics steps of max/min of the per-task gradient norms in ``tags``
    (a step logged twice, as by a resumed run, counts once with its last values)."""
    by_step: dict[int, dict[str, float]] = {}
    for tag in tags:
        for e in ea.Scalars(tag):
            by_step.setdefault(e.step, {})[tag] = e.value
    ratios = [max(v.values()) / min(v.values()) for v in by_step.values()
              if len(v) == len(tags) > 1 and min(v.values()) > 0]
    ratios = [r for r in ratios if np.isfinite(r)]
    return float(np.median(ratios)) if ratios else float("nan")


def expand(paths: list[Path]) -> list[Path]:
    """Run folders as given; a sweep folder (``mtrl sweep``) stands for all its trials."""
    runs: list[Path] = []
    for path in paths:
        trials = sorted(p for p in (path / "trials").glob("*") if (p / "config.yaml").is_file())
        runs += trials if not (path / "config.yaml").is_file() and trials else [path]
    return runs


# Settings that do not change what a run learns (bookkeeping, where it ran), left out of the
# "mixed settings" check; ``seed`` and ``run_dir`` differ between the runs of one method by design.
_BOOKKEEPING = {"seed", "run_dir", "device", "log_every", "episode_window", "checkpoint_every",
                "keep_checkpoints", "save_env_state", "video_every", "video_max_steps", "runner_max_restarts",
                "runner_restart_window"}
#: each algorithm's unused section (``sac.*`` of an MT-PPO run) is left out too
_OTHER_SECTION = {"mtsac": "ppo", "mtppo": "sac"}


def _flat(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True, default=str)
    return out


def config_differences(configs: list[dict[str, Any]]) -> list[str]:
    """Flattened config keys (``sac.hidden``) whose values differ between ``configs``, bookkeeping
    (``seed``, ``run_dir``, logging, checkpointing, ``device``) and the unused algorithm's section
    aside; ``surgery_args`` at the method's default count as absent (:func:`_is_default`).
    A key one config lacks counts as differing: pass configs with their defaults filled in
    (:func:`read_config`)."""
    flats = [_flat(_without_default_surgery_args(c)) for c in configs]
    keys = set().union(*flats) - _BOOKKEEPING if flats else set()
    unused = {_OTHER_SECTION.get(c.get("algo", "")) for c in configs}  # one algo per group: it is in the label
    keys = {k for k in keys if k.split(".", 1)[0] not in unused}
    return sorted(k for k in keys if len({f.get(k) for f in flats}) > 1)


def _without_default_surgery_args(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the ``surgery_args`` that equal the method's defaults removed."""
    surgery, args = cfg.get("surgery", "mean"), cfg.get("surgery_args") or {}
    return {**cfg, "surgery_args": {k: v for k, v in args.items() if not _is_default(surgery, k, v)}}


def read_config(path: Path) -> dict[str, Any]:
    """A run's ``config.yaml`` with today's defaults filled in (a run written before a setting
    existed gets its default, so it does not look different from newer runs); as plain YAML when
    it no longer fits the schema (a setting since removed)."""
    from omegaconf import OmegaConf

    from mtrl.config import load

    try:
        return OmegaConf.to_container(load(path), resolve=True)  # type: ignore[return-value]
    except MtrlError:
        return yaml.safe_load(path.read_text())


def collect(run_dirs: list[Path]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in expand(run_dirs):
        if not (run / "config.yaml").is_file():
            raise MtrlError(f"{run} is not a run folder (no config.yaml) nor a sweep folder (no trials/)")
        cfg = read_config(run / "config.yaml")
        scores, source = final_scores(run)
        groups[method_label(cfg)].append({"run": run, "seed": cfg.get("seed"), "scores": scores, "source": source,
                                          "config": cfg})
    tasks = sorted(next(iter(groups.values()))[0]["scores"])
    for runs in groups.values():
        for r in runs:
            if sorted(r["scores"]) != tasks:
                raise MtrlError(f"{r['run']} has tasks {sorted(r['scores'])}, others have {tasks}; "
                                "compare runs of one task set")
    return dict(groups)


def interval_estimates(matrices: dict[str, np.ndarray], reps: int = 2000,
                       seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per method, from its runs x tasks score matrix: the IQM and the mean (``point[m]``, ``[2]``)
    with 95% stratified bootstrap CIs (``ci[m]``, ``[2 (low, high), 2]``), as rliable computes them."""
    from rliable import library as rly
    from rliable import metrics

    def agg(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    point, ci = {}, {}
    for name, m in matrices.items():  # one method at a time: its interval must not depend on the others listed
        np.random.seed(seed)  # rliable's bootstrap draws from NumPy's global generator
        p, c = rly.get_interval_estimates({name: m}, agg, reps=reps)
        point[name], ci[name] = p[name], c[name]
    return point, ci


def aggregate(groups: dict[str, list[dict[str, Any]]], reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """IQM and mean with 95% stratified bootstrap CIs per method (rliable)."""
    tasks = sorted(groups[next(iter(groups))][0]["scores"])
    matrices = {m: np.array([[r["scores"][t] for t in tasks] for r in runs]) for m, runs in groups.items()}
    point, ci = interval_estimates(matrices, reps, seed)
    return {"tasks": tasks, "methods": {
        m: {"runs": len(groups[m]), "seeds": [r["seed"] for r in groups[m]], "iqm": float(point[m][0]),
            "iqm_ci95": [float(ci[m][0, 0]), float(ci[m][1, 0])], "mean": float(point[m][1]),
            "mean_ci95": [float(ci[m][0, 1]), float(ci[m][1, 1])],
            "per_task": dict(zip(tasks, matrices[m].mean(0).tolist())),
            "sources": sorted({r["source"] for r in groups[m]}),
            **_extras(groups[m])} for m in groups}}


def _extras(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Area under the curve (mean over runs, min, max) and the conflict summary (mean over runs)."""
    out: dict[str, Any] = {}
    # evaluation curves only: training-episode windows measure something else (stochastic policy)
    aucs = [float(np.mean(c[1])) for c in (eval_curve(r["run"]) for r in runs) if c is not None]
    if aucs:
        out["auc"], out["auc_range"], out["auc_runs"] = float(np.mean(aucs)), [min(aucs), max(aucs)], len(aucs)
    summaries = [conflict_summary(r["run"]) for r in runs]
    losses = sorted({k for s in summaries for k in s})
    if losses:
        out["conflict"] = {loss: {"runs": sum(loss in s for s in summaries),
                                  **{key: _finite_mean([s[loss][key] for s in summaries if loss in s])
                                     for key in ("conflict_fraction", "condition_number", "norm_spread")}}
                           for loss in losses}
    return out


def _finite_mean(xs: list[float]) -> float | None:
    """Mean of the finite values; None (JSON null) if there is none."""
    xs = [x for x in xs if np.isfinite(x)]
    return float(np.mean(xs)) if xs else None


def markdown(result: dict[str, Any]) -> str:
    tasks = result["tasks"]
    head = "| method | runs | IQM [95% CI] | mean [95% CI] | " + " | ".join(tasks) + " |"
    sep = "|" + "---|" * (4 + len(tasks))
    rows = [head, sep]
    for m, v in result["methods"].items():
        rows.append(f"| {m} | {v['runs']} | {v['iqm']:.3f} [{v['iqm_ci95'][0]:.3f}, {v['iqm_ci95'][1]:.3f}] | "
                    f"{v['mean']:.3f} [{v['mean_ci95'][0]:.3f}, {v['mean_ci95'][1]:.3f}] | "
                    + " | ".join(f"{v['per_task'][t]:.2f}" for t in tasks) + " |")
    text = "\n".join(rows) + "\n\nFinal per-task success; IQM/mean over all (run, task) scores; " \
        "95% stratified bootstrap CIs (rliable).\n"
    extra = [(m, v) for m, v in result["methods"].items() if "auc" in v or "conflict" in v]
    if extra:
        losses = sorted({k for _, v in extra for k in v.get("conflict", {})})
        cols = ([f"conflicting pairs ({k})" for k in losses] + [f"cond. number ({k})" for k in losses]
                + [f"grad-norm spread ({k})" for k in losses])
        text += "\n| method | area under curve [min, max over runs] | " + " | ".join(cols) + " |\n"
        text += "|" + "---|" * (2 + len(cols)) + "\n"
        for m, v in extra:
            auc = "-"
            if "auc" in v:
                auc = f"{v['auc']:.3f} [{v['auc_range'][0]:.3f}, {v['auc_range'][1]:.3f}]"
                auc += f" ({v['auc_runs']} runs)" if v["auc_runs"] != v["runs"] else ""
            c = v.get("conflict", {})

            def cell(k: str, key: str, fmt: str, c=c, v=v) -> str:
                if k not in c or c[k][key] is None:
                    return "-"
                return format(c[k][key], fmt) + (f" ({c[k]['runs']} runs)" if c[k]["runs"] != v["runs"] else "")

            cells = ([cell(k, "conflict_fraction", ".2f") for k in losses]
                     + [cell(k, "condition_number", ".1f") for k in losses]
                     + [cell(k, "norm_spread", ".1f") for k in losses])
            text += f"| {m} | {auc} | " + " | ".join(cells) + " |\n"
        text += ("\nArea under curve: mean success averaged over all deterministic evaluations of a run "
                 "(learning speed; runs without evaluations during training are left out). "
                 "Conflicting pairs: fraction of task pairs with negative gradient cosine, averaged over the "
                 "run's diagnostics; condition number of the task-gradient matrix, median over the run; "
                 "grad-norm spread: largest over smallest per-task gradient norm, median over the run.\n")
    for m, d in result.get("config_differences", {}).items():
        text += f"\n**Mixed settings:** the runs of {m} differ in {', '.join(f'`{k}`' for k in d)}.\n"
    return text


def plots(groups: dict[str, list[dict[str, Any]]], result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (m, runs) in enumerate(groups.items()):
        cs = [curve(r["run"]) for r in runs]
        cs = [c for c in cs if len(c[0])]
        if not cs:
            continue
        grid = np.linspace(max(c[0].min() for c in cs), min(c[0].max() for c in cs), 100)  # no extrapolation
        ys = np.array([np.interp(grid, *c) for c in cs])
        ax.plot(grid, ys.mean(0), color=f"C{i}", label=f"{m} ({len(cs)} runs)")
        if len(cs) > 1:
            ax.fill_between(grid, ys.min(0), ys.max(0), color=f"C{i}", alpha=0.2)
    ax.set(xlabel="env steps", ylabel="mean success over tasks", ylim=(-0.02, 1.02), title="learning curves (band: min-max)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    tasks = result["tasks"]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks)), 4))
    n = len(result["methods"])
    width = 0.8 / n
    for i, (m, v) in enumerate(result["methods"].items()):
        ax.bar(np.arange(len(tasks)) + i * width, [v["per_task"][t] for t in tasks], width, label=m, color=f"C{i}")
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="final success (mean over runs)", ylim=(0, 1.05), title="per task")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "per_task.png", dpi=110)


def compare(run_dirs: list[str | Path], out: str | Path = "compare", reps: int = 2000) -> dict[str, Any]:
    """Group, aggregate, and write ``compare.md``, ``compare.json``, ``curves.png``, ``per_task.png``."""
    groups = collect([Path(r) for r in run_dirs])
    result = aggregate(groups, reps)
    diffs = {m: d for m, runs in groups.items() if (d := config_differences([r["config"] for r in runs]))}
    for m, d in diffs.items():
        print(f"warning: the runs grouped as {m} differ in {', '.join(d)}; their aggregate mixes settings",
              file=sys.stderr)
    result["config_differences"] = diffs
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(markdown(result))
    (out / "compare.json").write_text(json.dumps(result, indent=2))
    plots(groups, result, out)
    return result
