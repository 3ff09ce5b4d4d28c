"""`mtrl sweep RECIPE`: a grid of training runs (task sets x methods x seeds x overrides) as Ray Tune trials.

A recipe (``launch/*.yaml``) names the grid::

    name: minigrid-mt5-surgery        # the sweep folder is runs/sweeps/<name> unless --out is given
    envs: [envs/minigrid-mt5.yaml]     # env presets (task sets)
    agents: [agents/mtppo.yaml, agents/mtppo-pcgrad.yaml]   # agent presets (methods)
    seeds: [0, 1, 2]
    grid: {ppo.lr: [0.0003, 0.001]}   # optional: every combination of these values
    overrides: {total_steps: 500000}  # optional: the same for every trial
    final_eval_episodes: 10           # optional: `mtrl eval` at the end of each trial (0: off)
    resources: {learner_cpus: 1, learner_gpus: 0}   # optional, per trial
    max_concurrent: 0                 # optional: 0 = as many as the cluster holds

Each trial is one ``mtrl train`` in its own run folder ``<sweep>/trials/<trial name>``,
running inside a Tune trial actor: its Ray runners (``runners: N``) are child actors placed in
the trial's placement group, one bundle for the learner (``learner_cpus`` CPUs and
``learner_gpus`` GPUs) and one per runner (``runner_cpus``), so Tune starts only as many
trials as the cluster can hold. Tune prints a live table of trials (step, windowed success,
steps/s). Every trial resumes from its own newest checkpoint when started again, and the Tune
experiment state lives in ``<sweep>/tune``, so running the same command after the driver died
restores the sweep (Tune's experiment restore) and finishes what is left. At the end
``<sweep>/results.md`` and ``results.json`` hold the final success per trial, and
``mtrl compare <sweep>`` aggregates the trials by method.

Why Tune and not a loop of subprocesses: Tune packs trials onto a multi-node cluster by their
resource bundles, restarts failed trials (``max_failures``), and restores an experiment after
the driver dies; the trials themselves stay plain ``mtrl train`` runs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from mtrl.errors import MtrlError, choices, did_you_mean

RECIPE_KEYS = ("name", "envs", "agents", "seeds", "grid", "overrides", "final_eval_episodes", "resources",
               "max_concurrent", "max_failures")
RESOURCE_KEYS = ("learner_cpus", "learner_gpus")


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read and check a recipe; a bad one fails here with one line, before any trial starts."""
    path = Path(path)
    if not path.is_file():
        raise MtrlError(f"recipe {path} does not exist; see launch/ for examples")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MtrlError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise MtrlError(f"{path} must hold a mapping with envs, agents and seeds")
    bad = [k for k in data if k not in RECIPE_KEYS]
    if bad:
        raise MtrlError(f"unknown recipe key {bad[0]!r} in {path}; {did_you_mean(bad[0], RECIPE_KEYS)}"
                        f"valid keys: {choices(RECIPE_KEYS)}")
    recipe = {"name": path.stem, "grid": {}, "overrides": {}, "final_eval_episodes": 10, "resources": {},
              "max_concurrent": 0, "max_failures": 1, **data}
    for key in ("envs", "agents", "seeds"):
        v = recipe.get(key)
        if not isinstance(v, list) or not v:
            raise MtrlError(f"{path}: {key!r} must be a non-empty list")
    if not all(isinstance(s, int) for s in recipe["seeds"]):
        raise MtrlError(f"{path}: seeds must be integers, got {recipe['seeds']}")
    for key in ("grid", "overrides", "resources"):
        if not isinstance(recipe[key], dict):
            raise MtrlError(f"{path}: {key!r} must be a mapping")
    for k, v in recipe["grid"].items():
        if not isinstance(v, list) or not v:
            raise MtrlError(f"{path}: grid.{k} must be a non-empty list of values")
    bad = [k for k in recipe["resources"] if k not in RESOURCE_KEYS]
    if bad:
        raise MtrlError(f"unknown resources key {bad[0]!r} in {path}; valid keys: {choices(RESOURCE_KEYS)}")
    return recipe


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _slug(v: Any) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in str(v))


def trials(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """Expand a recipe into trial specs ``{name, presets, overrides}``; every trial's config is
    built and validated here (as ``mtrl train`` does), so a bad recipe fails before Tune starts."""
    from mtrl import config as config_mod

    grid_keys = list(recipe["grid"])
    out = []
    for env, agent, values, seed in itertools.product(recipe["envs"], recipe["agents"],
                                                      itertools.product(*recipe["grid"].values()), recipe["seeds"]):
        presets = [str(config_mod.resolve_preset(env, "envs").resolve()),
                   str(config_mod.resolve_preset(agent, "agents").resolve())]
        overrides = {**recipe["overrides"], **dict(zip(grid_keys, values)), "seed": seed}
        items = [f"{k}={_value(v)}" for k, v in overrides.items()]
        cfg = config_mod.build_config(presets, items)  # validates keys, task set, surgery, curriculum, imitation
        if cfg.learners > 1:  # their actors would need bundles of the trial's placement group: not built yet
            raise MtrlError("learners > 1 is not available inside a sweep yet; sweep with learners=1 (the default)")
        name = "_".join([Path(env).stem, Path(agent).stem, *(f"{k}={_slug(v)}" for k, v in zip(grid_keys, values)),
                         f"s{seed}"])
        out.append({"name": name, "presets": presets, "overrides": items, "runners": int(cfg.runners),
                    "runner_cpus": float(cfg.runner_cpus), "config": OmegaConf.to_container(cfg)})
    names = [t["name"] for t in out]
    if len(set(names)) != len(names):
        raise MtrlError("two trials of the recipe have the same name (a preset listed twice?)")
    return out


# --------------------------------------------------------------------------- one trial (in a Tune actor)
def run_trial(config: dict[str, Any], specs: dict[str, dict[str, Any]]) -> None:
    """Tune's trainable: one ``mtrl train`` (resumed if its folder holds a checkpoint), then a
    final evaluation; reports progress to Tune. Console output goes to ``train.log`` in the
    trial's run folder."""
    import ray
    from ray import tune

    from mtrl import checkpoint
    from mtrl.config import build_config
    from mtrl.train import train

    spec, sweep_dir = specs[config["trial"]], Path(config["sweep_dir"])
    run_dir = sweep_dir / "trials" / spec["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = run_dir if checkpoint.list_checkpoints(run_dir / "checkpoints") else None
    last = [0.0]

    def report(metrics: dict[str, Any]) -> None:
        if metrics.get("final") or time.time() - last[0] > 5:
            last[0] = time.time()
            tune.report({k: v for k, v in metrics.items() if k != "final"})

    with open(run_dir / "train.log", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        overrides = list(spec["overrides"])
        if not ray.get_gpu_ids() and not any(o.startswith("device=") for o in overrides):
            overrides.append("device=cpu")  # no GPU reserved for this trial: never share another trial's
        cfg = build_config(spec["presets"], [*overrides, f"run_dir={run_dir}"])
        summary = run_dir / "summary.json"
        trained = summary.is_file() and json.loads(summary.read_text()).get("step", -1) >= cfg.total_steps
        if not trained:
            train(cfg, resume=resume, report=report)
        episodes = int(config["final_eval_episodes"])
        if episodes and not (run_dir / "eval.json").is_file():
            from mtrl.evaluate import evaluate_run

            result = evaluate_run(run_dir, episodes=episodes, progress=False)
            tmp = run_dir / "eval.json.tmp"
            tmp.write_text(json.dumps(result, indent=2))
            tmp.replace(run_dir / "eval.json")
    summary = final_row(run_dir)
    report({"step": summary["step"], "success": summary["success"], "final": True})


def final_row(run_dir: Path) -> dict[str, Any]:
    """A trial's final step and mean success (from ``eval.json`` when there is one)."""
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    row = {"trial": run_dir.name, "step": summary.get("step", 0), "success": summary.get("mean_success"),
           "source": "summary.json (training episodes)"}
    if (run_dir / "eval.json").is_file():
        ev = json.loads((run_dir / "eval.json").read_text())
        row.update(success=ev.get("mean_success_train"), source=f"eval.json ({ev['episodes_per_task']} episodes/task)")
    return row


def check_same_trials(sweep_dir: Path, specs: list[dict[str, Any]]) -> None:
    """Refuse to restore a sweep whose recipe now expands to other trials than the ones it
    started with (Tune would restore the old grid and the new names would not be found)."""
    saved_path = sweep_dir / "trials.json"
    if not (sweep_dir / "tune").is_dir() or not saved_path.is_file():
        return
    saved = {t["name"]: t for t in json.loads(saved_path.read_text())}
    now = {t["name"]: t for t in specs}
    added, removed = sorted(now.keys() - saved.keys()), sorted(saved.keys() - now.keys())
    # a trial is the same when its built config is (not its preset paths: the checkout may have moved)
    changed = sorted(n for n in now.keys() & saved.keys() if now[n].get("config") != saved[n].get("config"))
    if added or removed or changed:
        what = "; ".join(f"{label}: {', '.join(names)}" for label, names in
                         (("new trials", added), ("trials no longer in it", removed), ("changed trials", changed))
                         if names)
        raise MtrlError(f"the recipe changed since the sweep in {sweep_dir} started ({what}); a sweep restores "
                        "only the trials it began with: give a new folder with --out, or put the recipe back "
                        f"({sweep_dir / 'recipe.yaml'} is the one it started with)")


def _trial_name(trial) -> str:
    return trial.config["trial"]


# --------------------------------------------------------------------------- the driver
def sweep(recipe_path: str | Path, out: str | Path | None = None, address: str | None = None,
          dry_run: bool = False) -> Path:
    """Run (or restore and finish) the recipe's sweep; returns the sweep folder."""
    recipe = load_recipe(recipe_path)
    specs = trials(recipe)
    sweep_dir = Path(out or Path("runs") / "sweeps" / recipe["name"]).resolve()
    res = recipe["resources"]
    learner = {"CPU": float(res.get("learner_cpus", 1)), "GPU": float(res.get("learner_gpus", 0))}
    print(f"sweep {recipe['name']}: {len(specs)} trials -> {sweep_dir}", flush=True)
    for s in specs:
        print(f"  {s['name']}: {s['runners']} runners", flush=True)
    if dry_run:
        return sweep_dir
    check_same_trials(sweep_dir, specs)
    from ray import tune

    from mtrl.runners.pool import init_ray

    init_ray(address)
    import ray

    if learner["GPU"] and not ray.cluster_resources().get("GPU"):
        raise MtrlError("the recipe asks for learner_gpus but the Ray cluster has no GPU; set learner_gpus: 0")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    (sweep_dir / "trials.json").write_text(json.dumps(specs, indent=1))
    bundles = {s["name"]: [learner] + [{"CPU": s["runner_cpus"]}] * s["runners"] for s in specs}
    # One resource shape per trial; Tune takes a callable for per-trial placement groups.
    trainable = tune.with_resources(tune.with_parameters(run_trial, specs={s["name"]: s for s in specs}),
                                    lambda cfg: tune.PlacementGroupFactory(bundles[cfg["trial"]]))
    tune_dir = sweep_dir / "tune"
    if tune.Tuner.can_restore(str(tune_dir)):
        print(f"restoring the sweep from {tune_dir} (finished trials are kept, the others continue)", flush=True)
        tuner = tune.Tuner.restore(str(tune_dir), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([s["name"] for s in specs]), "sweep_dir": str(sweep_dir),
                         "final_eval_episodes": recipe["final_eval_episodes"]},
            tune_config=tune.TuneConfig(max_concurrent_trials=recipe["max_concurrent"] or None,
                                        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name="tune", storage_path=str(sweep_dir), verbose=1,
                                      failure_config=tune.FailureConfig(max_failures=recipe["max_failures"])))
    tuner.fit()
    rows = [final_row(sweep_dir / "trials" / s["name"]) for s in specs]
    write_table(sweep_dir, rows)
    return sweep_dir


def write_table(sweep_dir: Path, rows: list[dict[str, Any]]) -> None:
    lines = ["| trial | env steps | final success | from |", "|---|---|---|---|"]
    for r in rows:
        succ = "failed" if r["success"] is None else f"{r['success']:.2f}"
        lines.append(f"| {r['trial']} | {r['step']:,} | {succ} | {r['source']} |")
    table = "\n".join(lines) + "\n"
    (sweep_dir / "results.md").write_text(table)
    (sweep_dir / "results.json").write_text(json.dumps(rows, indent=2))
    print(table + f"wrote {sweep_dir / 'results.md'}; aggregate by method with: mtrl compare {sweep_dir}",
          file=sys.stdout, flush=True)
