"""Adapters that hand an mtrl task set to other RL libraries, with mtrl's observations (task
one-hot appended), shared action space and per-task episode info.

- :func:`sb3_vec_env`: a Stable-Baselines3 ``VecEnv`` (``mtrl.interop.sb3``).
- :func:`register_rllib_envs`: RLlib env names ``mtrl/<task set>`` (``mtrl.interop.rllib``).
- :class:`TaskSetEnv`: one gymnasium ``Env`` that plays a task set, a task drawn per episode.
"""

from mtrl.interop.single import TaskSetEnv


def sb3_vec_env(taskset: str, envs_per_task: int = 1, seed: int = 0, **kwargs):
    """A Stable-Baselines3 ``VecEnv`` over ``taskset`` (keyword arguments as :func:`mtrl.envs.make`)."""
    from mtrl.interop.sb3 import MtrlVecEnv

    return MtrlVecEnv(taskset, envs_per_task=envs_per_task, seed=seed, **kwargs)


def register_rllib_envs() -> list[str]:
    """Register ``mtrl/<task set>`` for every registered task set with RLlib; returns the names."""
    from mtrl.interop.rllib import register

    return register()


__all__ = ["TaskSetEnv", "register_rllib_envs", "sb3_vec_env"]
