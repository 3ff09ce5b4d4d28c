"""RLlib env names for mtrl task sets: ``mtrl/<task set>``, e.g.
``PPOConfig().environment("mtrl/minigrid/MT5", env_config={"max_episode_steps": 100})``.

Each RLlib sub-env is a :class:`mtrl.interop.single.TaskSetEnv` (a task drawn per episode,
mtrl's observations and action space, ``info["success"]``/``info["task_id"]``). ``env_config``
takes TaskSetEnv's keyword arguments (``seed``, ``task_weights``, ``tasks``,
``max_episode_steps``, ``one_hot``); the env runner's ``worker_index`` and the sub-env's index
(``vector_index`` where RLlib sets it, plus a per-process count, since the new API stack builds
every sub-env from one context) offset the seed and the first task, so parallel copies differ.
"""

from __future__ import annotations

import itertools
from typing import Any

from mtrl.envs import names
from mtrl.interop.single import TaskSetEnv

_made = itertools.count()  # sub-envs built in this process (RLlib's new stack sets no vector_index)


def creator(taskset: str):
    """An RLlib env creator for ``taskset``."""

    def make_env(env_config: dict[str, Any] | None = None) -> TaskSetEnv:
        cfg = dict(env_config or {})
        worker = int(getattr(env_config, "worker_index", 0) or 0)
        vector = int(getattr(env_config, "vector_index", 0) or 0)  # 0 for every sub-env on the new stack
        offset = worker * 64 + vector + next(_made)
        seed = int(cfg.pop("seed", 0)) + 1000 * offset
        return TaskSetEnv(taskset, seed=seed, first_task=offset, **cfg)

    return make_env


def register(tasksets: list[str] | None = None) -> list[str]:
    """Register ``mtrl/<name>`` with RLlib for the given (default: every registered) task set."""
    from ray.tune.registry import register_env

    out = []
    for name in tasksets or names():
        register_env(f"mtrl/{name}", creator(name))
        out.append(f"mtrl/{name}")
    return out
