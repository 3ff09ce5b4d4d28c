"""A Stable-Baselines3 ``VecEnv`` over an mtrl task set.

SB3 2.x has no adapter from a gymnasium ``VectorEnv`` (mtrl's :class:`MultiTaskVectorEnv`, which
autoresets in the same step) to its own ``VecEnv`` API, so this one translates: ``dones =
terminated | truncated``; where an episode ended, ``infos[i]`` holds ``terminal_observation``,
``TimeLimit.truncated`` (so SB3 bootstraps time limits), a Monitor-style ``episode`` dict
(``r``, ``l``, ``t``: SB3 logs ``rollout/ep_rew_mean`` from it) and ``is_success`` (SB3 logs
``rollout/success_rate``); every step's ``infos[i]`` has ``task_id`` and ``success`` for
callbacks that want per-task numbers. Observations are mtrl's (task one-hot appended).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from mtrl.envs import make


class MtrlVecEnv(VecEnv):
    """``VecEnv`` with ``envs_per_task`` slots per task of ``taskset`` (arguments of :func:`mtrl.envs.make`)."""

    def __init__(self, taskset: str, envs_per_task: int = 1, seed: int = 0, **kwargs: Any):
        self.env = make(taskset, envs_per_task=envs_per_task, seed=seed, **kwargs)
        super().__init__(self.env.num_envs, self.env.single_observation_space, self.env.single_action_space)
        self.task_names = self.env.task_names
        self._seed: int | None = seed
        self._actions: np.ndarray | None = None
        self._t0 = time.time()

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self._seed)
        self._seed = None  # later resets continue the same streams
        self.reset_infos = [{"task_id": int(t)} for t in self.env.task_ids]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, rew, term, trunc, info = self.env.step(self._actions)
        dones = term | trunc
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            d: dict[str, Any] = {"task_id": int(info["task_id"][i]), "success": bool(info["success"][i])}
            if dones[i]:
                ep = info["episode"]
                d["terminal_observation"] = info["final_obs"][i]
                d["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
                d["episode"] = {"r": float(ep["r"][i]), "l": int(ep["l"][i]), "t": round(time.time() - self._t0, 6),
                                "task_id": int(ep["task_id"][i])}
                d["is_success"] = bool(ep["success"][i])
            infos.append(d)
        return obs, rew, dones, infos

    def close(self) -> None:
        self.env.close()

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        self._seed = seed
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None for _ in self._indices(indices)]
        return [getattr(self.env, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *args, indices: VecEnvIndices = None, **kwargs) -> list[Any]:
        result = getattr(self.env, method_name)(*args, **kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def set_task_weights(self, weights: Sequence[float] | None) -> None:
        """Per-task sampling weights: each slot draws its next task at its episode end (a curriculum)."""
        self.env.set_task_weights(weights)
