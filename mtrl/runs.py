"""Run folders: a config -> env arguments and an agent; a run folder -> config + checkpoint + agent.

``mtrl train`` builds its pieces with :func:`env_kwargs` and :func:`build_agent`; ``mtrl eval``,
``mtrl record`` and video logging during training read a finished (or running) run back with
:func:`load_run`. Keeping this apart from the training loop means evaluation never imports the
loop, and every command resolves a run folder the same way (same errors, same checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from mtrl import checkpoint as ckpt_mod
from mtrl import config as config_mod
from mtrl.errors import MtrlError

if TYPE_CHECKING:
    import torch


def env_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """Arguments of :func:`mtrl.envs.make` for this config (without ``slots``)."""
    options = cfg.ppo.options if cfg.algo == "mtppo" and cfg.ppo.heads == "options" else 0
    return dict(taskset="custom" if cfg.tasks else cfg.taskset, tasks=list(cfg.tasks) or None,
                envs_per_task=cfg.envs_per_task, seed=cfg.seed, split=cfg.split,
                max_episode_steps=cfg.max_episode_steps, one_hot=cfg.one_hot, options=options,
                task_share=cfg.task_share)


def default_run_dir(cfg: DictConfig) -> Path:
    """``runs/<set>_<algo>_s<seed>_<time>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = (cfg.taskset if not cfg.tasks else "custom").replace("/", "-").replace(":", "-")
    return Path("runs") / f"{name}_{cfg.algo}_s{cfg.seed}_{stamp}"


def build_agent(cfg: DictConfig, env, learners: int = 1, address: str | None = None,
                device: str | None = None) -> Any:
    """The learner named by ``cfg.algo`` with its config section (``cfg.ppo``, ``cfg.sac``);
    ``learners > 1``: that many data-parallel learners on Ray (:mod:`mtrl.learners`). The
    learner runs on ``device`` (default: ``cfg.device``, resolved by :mod:`mtrl.agents.device`)."""
    from mtrl.agents import ALGORITHMS

    cls, section = ALGORITHMS[cfg.algo]
    try:
        section_cfg = OmegaConf.to_object(cfg[section])
        if cfg.obs == "image":
            section_cfg.encoder = "cnn"
        if hasattr(section_cfg, "arch"):
            from mtrl.agents import archs

            if archs.get(section_cfg.arch).needs_descriptions:  # CARE: the tasks' descriptions, embedded by the net
                from mtrl.envs.descriptions import descriptions

                section_cfg.arch_args = {**section_cfg.arch_args, "descriptions": descriptions(env.task_names)}
        kwargs = dict(seed=cfg.seed, surgery=cfg.surgery, surgery_args=dict(cfg.surgery_args),
                      diagnostics_every=cfg.diagnostics_every)
        dev = check_learner_device(cfg, learners, device)
        if dev.type != "cpu":  # (only learners that support a GPU take the argument)
            kwargs["device"] = dev
        if learners > 1:
            from mtrl.learners import LearnerGroup

            return LearnerGroup(cls, section_cfg, env.obs_dim, env.num_tasks, env.single_action_space, learners,
                                address=address, learner_cpus=cfg.learner_cpus, **kwargs)
        return cls(section_cfg, env.obs_dim, env.num_tasks, env.single_action_space, **kwargs)
    except ValueError as exc:
        raise MtrlError(str(exc)) from None


def check_learner_device(cfg: DictConfig, learners: int | None = None, device: str | None = None) -> torch.device:
    """The device the run's learner will use (``device``, default ``cfg.device``, resolved by
    :mod:`mtrl.agents.device`), or a one-line :class:`MtrlError` (``cuda`` where torch sees no
    GPU, or for a run that cannot use one)."""
    from mtrl.agents import device as device_mod

    try:
        return device_mod.resolve(cfg.get("device", "cpu") if device is None else device,
                                  device_mod.why_not_gpu(cfg, learners))
    except ValueError as exc:
        raise MtrlError(str(exc)) from None


def load_config(run_dir: str | Path) -> DictConfig:
    """A run folder's ``config.yaml``, or a one-line error if the folder is not a run."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise MtrlError(f"{run_dir} is not a run folder (no config.yaml); give the folder `mtrl train` printed")
    return config_mod.load(run_dir / "config.yaml")


@dataclass
class LoadedRun:
    """A run folder read back: its config, the checkpoint used, and the agent with its weights."""

    run_dir: Path
    cfg: DictConfig
    checkpoint: Path
    step: int
    agent: Any
    probe: Any  # the task set's vector env (built lazily: spaces and names only)


def load_run(run_dir: str | Path, checkpoint: str | Path | None = None, trusted: bool = False) -> LoadedRun:
    """Load ``run_dir``'s config and its newest (or the given) checkpoint into an agent.

    The checkpoint is read weights-only (nothing in it can run code); ``trusted=True`` also
    accepts a full-pickle checkpoint written before mtrl's safe format."""
    from mtrl.envs import make

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    if checkpoint:
        path = Path(checkpoint)
        if not path.is_file():
            raise MtrlError(f"checkpoint {path} does not exist; see {run_dir / 'checkpoints'}")
        state = ckpt_mod.load(path, trusted)
    else:
        path, state = ckpt_mod.latest_intact(run_dir, trusted)
    probe = make(**env_kwargs(cfg))
    agent = build_agent(cfg, probe, device="cpu")  # evaluation and recording act on the CPU
    agent.load_state_dict(state["agent"])
    return LoadedRun(run_dir, cfg, path, int(state["step"]), agent, probe)
