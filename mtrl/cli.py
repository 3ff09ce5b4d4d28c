"""``mtrl`` command line: ``tasksets``, ``archs``, ``train``, ``eval``, ``record``, ``demos``, ``compare``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mtrl.errors import MtrlError


def _cmd_tasksets(args: argparse.Namespace) -> None:
    from mtrl.envs import get, tasksets

    for name in tasksets.names():
        if name.endswith("<task>"):
            print(f"{name}\n    any single Meta-World v3 task, e.g. metaworld/MT1:reach-v3")
            continue
        ts = get(name)
        print(f"{name}  ({len(ts.train)} tasks{f', {len(ts.test)} held out' if ts.test else ''}): {ts.description}")
        print("    train: " + ", ".join(t.name for t in ts.train))
        if ts.test:
            print("    test:  " + ", ".join(t.name for t in ts.test))
    print("custom: an env preset with `tasks: [...]` of Meta-World task names or gymnasium ids")


def _cmd_archs(args: argparse.Namespace) -> None:
    from mtrl.agents import archs

    for name, entry in archs.ARCHS.items():
        doc = entry.summary
        opts = ", ".join(f"{k}={v!r}" for k, v in archs.options(name).items() if k != "descriptions")
        extra = " (per-task output heads)" if entry.heads else ""
        extra += " (needs task descriptions: mtrl/envs/descriptions.py)" if entry.needs_descriptions else ""
        print(f"{name}{extra}\n    {doc}\n    arch_args: {opts or 'none'}")
    print("use: sac.arch=NAME or ppo.arch=NAME, options as 'sac.arch_args={key: value}'")


def _cmd_train(args: argparse.Namespace) -> None:
    from mtrl import config
    from mtrl.train import train

    presets = [a for a in args.items if "=" not in a]
    overrides = [a for a in args.items if "=" in a]
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise MtrlError(f"{run_dir} is not a run folder (no config.yaml); give the folder `mtrl train` printed")
        if presets:
            raise MtrlError("--resume takes the run's own config.yaml; give only key=value overrides")
        cfg = config.build_config([], overrides, base=config.load(run_dir / "config.yaml"))
        train(cfg, resume=run_dir, address=args.address, from_checkpoint=args.checkpoint)
        return
    if args.checkpoint:
        raise MtrlError("--checkpoint goes with --resume RUN_DIR")
    if len(presets) != 2:
        raise MtrlError(f"train needs ENV_PRESET AGENT_PRESET (e.g. envs/minigrid-mt5.yaml agents/mtppo.yaml), "
                        f"got {presets or 'none'}")
    cfg = config.build_config(presets, overrides)
    train(cfg, address=args.address)


def _cmd_eval(args: argparse.Namespace) -> None:
    import json

    from mtrl.evaluate import evaluate_run, format_table

    if args.episodes <= 0:
        raise MtrlError(f"--episodes must be positive, got {args.episodes}")
    result = evaluate_run(args.run_dir, args.checkpoint, args.episodes, args.tasks, args.seed,
                          progress=sys.stderr.isatty(), deterministic=not args.stochastic, trusted=args.trust)
    print(format_table(result))
    out = Path(args.run_dir) / ("eval.json" if not args.stochastic else "eval_stochastic.json")
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")


def _cmd_record(args: argparse.Namespace) -> None:
    from mtrl.video import record

    if args.episodes <= 0 or args.size < 16:
        raise MtrlError(f"--episodes must be positive and --size at least 16, got {args.episodes}, {args.size}")
    res = record(args.run_dir, args.tasks, args.episodes, args.checkpoint, args.camera, args.size,
                 args.max_steps, args.fps, trusted=args.trust)
    for v in res["videos"]:
        print(f"{v['task']}: {v['path']} ({v['frames']} frames, success {v['success']})")
    print(f"grid: {res['grid']}" + (f" (rendered with MUJOCO_GL={res['backend']})" if res["backend"] else ""))


def _cmd_demos(args: argparse.Namespace) -> None:
    from mtrl.imitation.demos import make_demos

    res = make_demos(args.taskset, args.episodes, args.out, labels=not args.no_labels, seed=args.seed,
                     max_episode_steps=args.max_steps, overwrite=args.overwrite, progress=sys.stderr.isatty(),
                     only_successful=args.only_successful)
    print(f"{'task':32s} {'expert success':>14s}")
    for name, s in res["expert_success"].items():
        print(f"{name:32s} {s:14.2f}")
    print(f"wrote {res['episodes']} episodes ({res['steps']:,} steps, "
          f"{'with' if res['labels'] else 'without'} task labels) to {res['path']}")


def _cmd_compare(args: argparse.Namespace) -> None:
    from mtrl.compare import compare, markdown

    if args.reps <= 0:
        raise MtrlError(f"--reps must be positive, got {args.reps}")
    result = compare(args.run_dirs, args.out, args.reps)
    print(markdown(result))
    print(f"wrote {Path(args.out) / 'compare.md'}, curves.png, per_task.png")


def _cmd_sweep(args: argparse.Namespace) -> None:
    from mtrl.sweep import sweep

    sweep(args.recipe, args.out, args.address, dry_run=args.dry_run)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtrl", description="Multi-task RL on Meta-World and MiniGrid with Ray.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("tasksets", help="list the task sets and their tasks")
    s.set_defaults(func=_cmd_tasksets)
    s = sub.add_parser("archs", help="list the network architectures (sac.arch / ppo.arch) and their options")
    s.set_defaults(func=_cmd_archs)
    s = sub.add_parser("train", help="train a multi-task policy",
                       description="mtrl train ENV_PRESET AGENT_PRESET [key=value ...] [--address ADDR] [--resume RUN_DIR]")
    s.add_argument("items", nargs="*", metavar="PRESET_OR_KEY=VALUE",
                   help="env preset, agent preset, then key=value overrides (e.g. total_steps=1e5 runners=2)")
    s.add_argument("--address", default=None, help="Ray cluster to join ('auto' or host:port); default: local cluster")
    s.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    s.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="with --resume: continue from this checkpoint (default: the newest intact one)")
    s.set_defaults(func=_cmd_train)
    s = sub.add_parser("eval", help="evaluate a run's policy: per-task success with 95%% intervals")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("--checkpoint", default=None, help="checkpoint file (default: the newest)")
    s.add_argument("--trust", action="store_true",
                   help="also load a full-pickle checkpoint from an older mtrl (only for runs you made yourself)")
    s.add_argument("--episodes", type=int, default=10, help="episodes per task (default 10)")
    s.add_argument("--tasks", nargs="+", default=None, help="only these tasks")
    s.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the run's seed + 20000)")
    s.add_argument("--stochastic", action="store_true",
                   help="sample actions instead of taking the most likely (writes eval_stochastic.json)")
    s.set_defaults(func=_cmd_eval)
    s = sub.add_parser("record", help="record mp4 rollouts per task and a grid video of all tasks")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("--tasks", nargs="+", default=None, help="only these tasks")
    s.add_argument("--episodes", type=int, default=1, help="episodes per task (default 1)")
    s.add_argument("--checkpoint", default=None, help="checkpoint file (default: the newest)")
    s.add_argument("--trust", action="store_true",
                   help="also load a full-pickle checkpoint from an older mtrl (only for runs you made yourself)")
    s.add_argument("--camera", default=None, help="Meta-World camera, e.g. corner, topview (default: free camera)")
    s.add_argument("--size", type=int, default=256, help="Meta-World frame side in pixels (default 256)")
    s.add_argument("--max-steps", type=int, default=500, help="cap on steps per episode")
    s.add_argument("--fps", type=int, default=30)
    s.set_defaults(func=_cmd_record)
    s = sub.add_parser("demos", help="expert demonstrations for a task set, stored as a Minari dataset")
    s.add_argument("taskset", metavar="TASKSET", help="a task set name (see `mtrl tasksets`)")
    s.add_argument("--episodes", type=int, default=10, help="episodes per task (default 10)")
    s.add_argument("--out", default="demos", help="root folder of the datasets (default: ./demos)")
    s.add_argument("--no-labels", action="store_true", help="strip task ids (unannotated demonstrations)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-steps", type=int, default=None, help="episode limit (default: each task's own)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing dataset of the same id")
    s.add_argument("--only-successful", action="store_true",
                   help="store successful episodes only (the printed expert success still counts every episode)")
    s.set_defaults(func=_cmd_demos)
    s = sub.add_parser("compare", help="aggregate runs by method over seeds (IQM, bootstrap CIs, plots)")
    s.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders, or a sweep folder (all its trials)")
    s.add_argument("--out", default="compare", help="output folder (default: ./compare)")
    s.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    s.set_defaults(func=_cmd_compare)
    s = sub.add_parser("sweep", help="run a recipe's grid (task sets x methods x seeds) as Ray Tune trials",
                       description="mtrl sweep launch/RECIPE.yaml [--out DIR] [--address ADDR]; running it again "
                                   "after the driver died restores the sweep and finishes it")
    s.add_argument("recipe", metavar="RECIPE", help="a recipe YAML (see launch/)")
    s.add_argument("--out", default=None, help="sweep folder (default: runs/sweeps/<recipe name>)")
    s.add_argument("--address", default=None, help="Ray cluster to join ('auto' or host:port); default: local cluster")
    s.add_argument("--dry-run", action="store_true", help="check the recipe and list its trials, run nothing")
    s.set_defaults(func=_cmd_sweep)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except MtrlError as exc:
        print(f"mtrl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtrl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mtrl tasksets | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
