"""Task sets behind one gymnasium interface (see :mod:`mtrl.envs.vector`)."""

from __future__ import annotations

from collections.abc import Sequence

from mtrl.envs.tasksets import TaskSet, get, names, register
from mtrl.envs.vector import MultiTaskVectorEnv

__all__ = ["MultiTaskVectorEnv", "TaskSet", "get", "make", "names", "register"]


def make(taskset: str | TaskSet, envs_per_task: int = 1, seed: int = 0, *,
         tasks: Sequence[str] | None = None, split: str = "train",
         max_episode_steps: int | None = None, one_hot: bool = True,
         slots: Sequence[int] | None = None, render_mode: str | None = None,
         render_kwargs: dict | None = None, options: int = 0, task_share: str = "episodes") -> MultiTaskVectorEnv:
    """A gymnasium vector env over a task set, ``envs_per_task`` slots per task.

    Example: ``env = mtrl.envs.make("minigrid/MT5", envs_per_task=2, seed=0)``; then
    ``env.reset()``, ``env.step(actions)``; ``env.set_task_weights([...])`` changes which
    tasks slots run after their current episode.
    """
    ts = taskset if isinstance(taskset, TaskSet) else get(taskset, tasks)
    return MultiTaskVectorEnv(ts, envs_per_task=envs_per_task, seed=seed, slots=slots, split=split,
                              max_episode_steps=max_episode_steps, one_hot=one_hot, render_mode=render_mode,
                              render_kwargs=render_kwargs, options=options, task_share=task_share)
