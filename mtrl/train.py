"""The training loop: runners -> rollout -> learner -> log -> checkpoint.

On-policy (MT-PPO): every iteration each runner steps its slots ``ppo.num_steps`` times with
the current weights, the learner updates once, then logs and, every ``checkpoint_every``
env steps, writes an atomic checkpoint that resumes exactly (model, optimiser, counters,
RNGs, env state, episode windows).
"""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mtrl import checkpoint
from mtrl import config as config_mod
from mtrl.agents import ALGORITHMS
from mtrl.envs import make
from mtrl.errors import MtrlError
from mtrl.logging import EpisodeStats, Logger
from mtrl.runners import RunnerPool


def env_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """Arguments of :func:`mtrl.envs.make` for this config (without ``slots``)."""
    return dict(taskset="custom" if cfg.tasks else cfg.taskset, tasks=list(cfg.tasks) or None,
                envs_per_task=cfg.envs_per_task, seed=cfg.seed, split=cfg.split,
                max_episode_steps=cfg.max_episode_steps, one_hot=cfg.one_hot)


def default_run_dir(cfg: DictConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = (cfg.taskset if not cfg.tasks else "custom").replace("/", "-").replace(":", "-")
    return Path("runs") / f"{name}_{cfg.algo}_s{cfg.seed}_{stamp}"


def build_agent(cfg: DictConfig, env) -> Any:
    algo = ALGORITHMS[cfg.algo]
    agent_cfg = OmegaConf.to_object(cfg.ppo)
    return algo(agent_cfg, env.obs_dim, env.num_tasks, env.single_action_space, seed=cfg.seed)


def train(cfg: DictConfig, resume: Path | None = None, address: str | None = None) -> Path:
    """Train per ``cfg`` (or continue the run in ``resume``); returns the run folder."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(resume) if resume else Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    state = checkpoint.load(checkpoint.latest(run_dir)) if resume else None
    if not resume:
        if (run_dir / "checkpoints").is_dir() and checkpoint.list_checkpoints(run_dir / "checkpoints"):
            raise MtrlError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                            "or pick another run_dir")
        run_dir.mkdir(parents=True, exist_ok=True)
    cfg.run_dir = str(run_dir)
    config_mod.save(cfg, run_dir / "config.yaml")

    probe = make(**env_kwargs(cfg))  # builds no env until reset: only spaces and names
    task_names, total_slots = probe.task_names, probe.total_slots
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    agent = build_agent(cfg, probe)
    stats = EpisodeStats(task_names, cfg.episode_window)
    step, last_ckpt = 0, 0
    print(f"run folder: {run_dir}  (tensorboard --logdir {run_dir})", flush=True)
    print(f"task set {probe.taskset.name}: {len(task_names)} tasks x {cfg.envs_per_task} envs, "
          f"obs {probe.obs_dim}, actions {probe.single_action_space}, "
          f"{'in-process sampling' if cfg.runners == 0 else f'{cfg.runners} Ray runners'}", flush=True)
    pool = RunnerPool(env_kwargs(cfg), total_slots, agent.policy_spec, cfg.runners, cfg.seed,
                      cfg.runner_cpus, address)
    if state is not None:
        agent.load_state_dict(state["agent"])
        stats.load_state_dict(state["stats"])
        step = last_ckpt = state["step"]
        checkpoint.set_rng_state(state["rng"])
        if state.get("runners") is not None:
            pool.set_state(state["runners"])
        print(f"resumed from {checkpoint.latest(run_dir).name} at step {step:,}", flush=True)
    logger = Logger(run_dir, task_names, cfg.total_steps, start_step=step)

    def save_ckpt() -> Path:
        blob = {"step": step, "agent": agent.state_dict(), "stats": stats.state_dict(),
                "rng": checkpoint.rng_state(), "config": OmegaConf.to_container(cfg),
                "runners": pool.get_state() if cfg.save_env_state else None}
        return checkpoint.save(blob, run_dir / "checkpoints", step, cfg.keep_checkpoints)

    interrupted = False

    def on_sigint(signum, frame):  # finish the current update, checkpoint, then stop
        nonlocal interrupted
        interrupted = True
        print("\ninterrupt: writing a checkpoint after this update (Ctrl-C again to abort)", flush=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    old_handler = signal.signal(signal.SIGINT, on_sigint)
    steps_per_iter = cfg.ppo.num_steps * total_slots
    try:
        while step < cfg.total_steps and not interrupted:
            t0 = time.time()
            rollout = pool.sample(cfg.ppo.num_steps, agent.policy_state())
            t1 = time.time()
            out = agent.update(rollout, progress=step / cfg.total_steps)
            t2 = time.time()
            step += steps_per_iter
            new = stats.add(rollout["episodes"])
            if agent.updates % cfg.log_every == 0 or step >= cfg.total_steps:
                logger.episodes(step, new)
                logger.scalars(step, {**out, "perf/steps_per_s": steps_per_iter / (t2 - t0),
                                      "perf/sample_s": t1 - t0, "perf/update_s": t2 - t1,
                                      "success/window": stats.per_task(1), "episodes/total": stats.total})
                logger.progress(step, stats)
            if cfg.checkpoint_every and step // cfg.checkpoint_every > last_ckpt // cfg.checkpoint_every:
                save_ckpt()
                last_ckpt = step
        path = save_ckpt()
        summary = {"step": step, "mean_success": stats.mean_success(),
                   "success": dict(zip(task_names, np.nan_to_num(stats.per_task(1)).tolist())),
                   "checkpoint": str(path)}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"{'stopped' if interrupted else 'done'}: step {step:,}, mean success {summary['mean_success']:.2f}; "
              f"checkpoint {path}; logs: tensorboard --logdir {run_dir}", flush=True)
    finally:
        signal.signal(signal.SIGINT, old_handler)
        logger.close()
        pool.close()
    return run_dir
