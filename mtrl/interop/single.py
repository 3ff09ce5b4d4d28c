"""One gymnasium ``Env`` over a whole task set: a task drawn per episode.

Libraries that build their own vector envs from single envs (RLlib's env runners, gymnasium's
``make_vec``) get mtrl's observations (task one-hot appended), the shared action space and
``info["success"]`` / ``info["task_id"]`` from this class. It is a one-slot
:class:`mtrl.envs.vector.MultiTaskVectorEnv` whose slot draws its next task at every episode
end from ``task_weights`` (default: uniform), so the same env code runs under every library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from mtrl.envs import get, make


class TaskSetEnv(gym.Env):
    """A single env that plays ``taskset``'s tasks, one per episode.

    Args:
        taskset: a task-set name (as in ``mtrl tasksets``) or a YAML preset path.
        seed: seed of the env and of its task draws.
        first_task: index of the first episode's task (e.g. a worker index, so that parallel
            copies start on different tasks); later tasks are drawn from ``task_weights``.
        task_weights: per-task sampling weights (default uniform).
        tasks: task list for a custom set; ``max_episode_steps``, ``one_hot`` as in
            :func:`mtrl.envs.make`.
    """

    metadata = {"render_modes": []}

    def __init__(self, taskset: str, seed: int = 0, first_task: int = 0, task_weights: Sequence[float] | None = None,
                 tasks: Sequence[str] | None = None, max_episode_steps: int | None = None, one_hot: bool = True):
        T = len(get(taskset, tasks).tasks("train"))
        self.vec = make(taskset, envs_per_task=1, seed=seed, tasks=tasks, max_episode_steps=max_episode_steps,
                        one_hot=one_hot, slots=[int(first_task) % T])
        self.vec.set_task_weights(np.ones(T) if task_weights is None else task_weights)
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.task_names = self.vec.task_names
        self._next_obs: np.ndarray | None = None
        self._seed = seed
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if self._next_obs is None or seed is not None:  # first episode, a re-seed, or a reset mid-episode
            first = not self._started
            self._started = True
            obs, info = self.vec.reset(seed=seed if seed is not None else self._seed if first else None)
            self._next_obs = None
            return obs[0], {"task_id": int(self.vec.task_ids[0])}
        obs, self._next_obs = self._next_obs, None  # the vector env already reset after the last episode
        return obs, {"task_id": int(self.vec.task_ids[0])}

    def step(self, action):
        obs, r, term, trunc, info = self.vec.step(np.asarray(action)[None])
        out = {"task_id": int(info["task_id"][0]), "success": bool(info["success"][0])}
        if term[0] or trunc[0]:
            self._next_obs = obs[0]
            obs = info["final_obs"]
            out["episode_success"] = bool(info["episode"]["success"][0])
        return obs[0], float(r[0]), bool(term[0]), bool(trunc[0]), out

    def close(self) -> None:
        self.vec.close()
