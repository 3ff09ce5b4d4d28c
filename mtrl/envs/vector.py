"""Multi-task vector env: slots of task envs with one observation layout and per-task weights.

Observation of every slot: the task's flat observation, zero-padded to the widest task in the
set, followed by the one-hot task id (unless ``one_hot=False``, e.g. for ML held-out tasks).

Slots: ``envs_per_task * T`` global slots; slot ``g`` starts on task ``g % T``. With the
default (uniform, ``task_weights=None``) a slot keeps its task for good, so every task gets
exactly ``envs_per_task`` slots. After :meth:`MultiTaskVectorEnv.set_task_weights`, a slot
draws a new task each time an episode ends (the curriculum hook); envs are built lazily per
(slot, task) and kept. How it draws is ``task_share``:

- ``episodes`` (default): from the weights, so each task's share of *episodes* follows them; its
  share of env steps is then weight x episode length, and tasks whose episodes run to the time
  limit (the unsolved ones) take more of the data than their weight;
- ``steps``: the task furthest below its share of this env's slots (weight x slots minus the
  slots running it now; ties broken by the slot's generator), so each task's share of *env
  steps* follows the weights whatever its episode length (up to the episodes in progress).

Autoreset is gymnasium's SAME_STEP mode: the step that ends an episode returns the next
episode's first observation; the real last observation is in ``infos["final_obs"]`` (masked
by ``infos["_final_obs"]``). Finished episodes are reported in ``infos["episode"]``
(``r``, ``l``, ``success`` = succeeded at any step, ``task_id``) masked by ``infos["_episode"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from mtrl.envs.tasks import action_space_of, build_task_env, raw_obs_dim
from mtrl.envs.tasksets import TaskSet
from mtrl.errors import MtrlError


def _option_space(space: gym.Space, k: int) -> gym.Space:
    """The packed (option, action) space of an option env."""
    if isinstance(space, gym.spaces.Discrete):
        return gym.spaces.MultiDiscrete([k, int(space.n)])
    low = np.concatenate([[0.0], np.asarray(space.low, np.float32).ravel()]).astype(np.float32)
    high = np.concatenate([[k - 1.0], np.asarray(space.high, np.float32).ravel()]).astype(np.float32)
    return gym.spaces.Box(low, high, dtype=np.float32)


class MultiTaskVectorEnv(gym.vector.VectorEnv):
    """Synchronous multi-task vector env over (a subset of) a task set's slots.

    Args:
        taskset: the task set.
        envs_per_task: slots per task in the whole set (all runners together).
        seed: base seed; slot ``g`` resets first with ``seed + g`` and Meta-World goals use ``seed``.
        slots: global slot indices this env owns (default: all); runners split them.
        split: ``train`` or ``test`` (ML sets).
        max_episode_steps: optional episode limit overriding the task's own.
        one_hot: append the one-hot task id to observations.
        options: K > 0 makes it an option env for hierarchical policies: an action is
            ``(option, action)`` packed in one row (MultiDiscrete([K, n]) for discrete tasks,
            a Box with the option in column 0 for continuous ones), the env steps with the
            action, remembers each slot's option and appends the one-hot *previous* option
            (K + 1 entries, index K before the first step of an episode) to the observation.
            Slots report the options taken in ``infos["option"]``.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, taskset: TaskSet, envs_per_task: int = 1, seed: int = 0,
                 slots: Sequence[int] | None = None, split: str = "train",
                 max_episode_steps: int | None = None, one_hot: bool = True,
                 render_mode: str | None = None, render_kwargs: dict | None = None, options: int = 0,
                 task_share: str = "episodes"):
        if task_share not in ("episodes", "steps"):
            raise MtrlError(f"task_share must be 'episodes' or 'steps', got {task_share!r}")
        self.task_share = task_share
        if envs_per_task < 1:
            raise MtrlError(f"envs_per_task must be >= 1, got {envs_per_task}")
        self.taskset = taskset
        self.tasks = taskset.tasks(split)
        self.task_names = [t.name for t in self.tasks]
        self.num_tasks = T = len(self.tasks)
        self.total_slots = T * envs_per_task
        self.slots = list(range(self.total_slots)) if slots is None else [int(s) for s in slots]
        if not self.slots or min(self.slots) < 0 or max(self.slots) >= self.total_slots:
            raise MtrlError(f"slots must lie in [0, {self.total_slots}), got {self.slots}")
        self.num_envs = len(self.slots)
        self.seed = int(seed)
        self.max_episode_steps = max_episode_steps
        self.one_hot = one_hot
        self.render_mode = render_mode
        self.render_kwargs = render_kwargs

        spaces = [action_space_of(t) for t in self.tasks]
        if any(s != spaces[0] for s in spaces):
            bad = [(t.name, str(s)) for t, s in zip(self.tasks, spaces) if s != spaces[0]]
            raise MtrlError(f"tasks of {taskset.name!r} have different action spaces: {bad[:3]}; "
                            "a task set needs one shared action space")
        self.raw_dim = max(raw_obs_dim(t) for t in self.tasks)
        self.options = int(options)
        self.obs_dim = self.raw_dim + (T if one_hot else 0) + (self.options + 1 if self.options else 0)
        self.task_action_space = spaces[0]
        self.single_action_space = spaces[0] if not self.options else _option_space(spaces[0], self.options)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)

        self._envs: dict[tuple[int, int], gym.Env] = {}
        self._fresh: set[tuple[int, int]] = set()
        self.task_ids = np.array([g % T for g in self.slots], dtype=np.int64)
        self._weights: np.ndarray | None = None
        self._slot_rng = [np.random.default_rng([self.seed, g]) for g in self.slots]
        self._obs = np.zeros((self.num_envs, self.obs_dim), np.float32)
        self._ep_ret = [0.0] * self.num_envs
        self._ep_len = [0] * self.num_envs
        self._ep_succ = [False] * self.num_envs
        self._continuous = isinstance(self.task_action_space, gym.spaces.Box)
        self._prev_option = np.full(self.num_envs, self.options, np.int64)  # K: no option yet

    # ------------------------------------------------------------------ task weights
    @property
    def task_weights(self) -> np.ndarray | None:
        """Current per-task sampling weights (None = one fixed task per slot)."""
        return None if self._weights is None else self._weights.copy()

    def set_task_weights(self, weights: Sequence[float] | None) -> None:
        """Set per-task sampling weights; slots draw their next task at each episode end."""
        if weights is None:
            self._weights = None
            return
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.num_tasks,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise MtrlError(f"task weights must be {self.num_tasks} finite non-negative numbers "
                            f"with a positive sum, got {list(np.round(w, 4))}")
        self._weights = w / w.sum()

    def _next_task(self, i: int) -> int:
        """Slot i's next task under the weights (see ``task_share`` in the module docstring)."""
        rng, w = self._slot_rng[i], self._weights
        assert w is not None
        if self.task_share == "episodes":
            return int(rng.choice(self.num_tasks, p=w))
        running = np.bincount(np.delete(self.task_ids, i), minlength=self.num_tasks)
        deficit = w * self.num_envs - running
        best = np.flatnonzero(deficit >= deficit.max() - 1e-9)
        return int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])

    # ------------------------------------------------------------------ env plumbing
    def _env(self, i: int, task: int) -> gym.Env:
        key = (i, task)
        env = self._envs.get(key)
        if env is None:
            env = build_task_env(self.tasks[task], self.seed, self.max_episode_steps, self.render_mode,
                                 self.render_kwargs)
            self._envs[key] = env
            self._fresh.add(key)
        return env

    def _reset_slot(self, i: int) -> None:
        task = int(self.task_ids[i])
        env = self._env(i, task)
        key = (i, task)
        self._prev_option[i] = self.options  # a new episode has no previous option
        if key in self._fresh:  # first reset of this (slot, task) env: seed it
            self._fresh.discard(key)
            g = self.slots[i]
            obs, _ = env.reset(seed=self.seed * 100_003 + g * 1009 + task)
            env.action_space.seed(self.seed * 100_003 + g * 1009 + task)
        else:
            obs, _ = env.reset()
        self._write_obs(i, obs, task)
        self._ep_ret[i] = 0.0
        self._ep_len[i] = 0
        self._ep_succ[i] = False

    def _write_obs(self, i: int, obs: np.ndarray, task: int) -> None:
        row = self._obs[i]
        n = obs.shape[0]
        row[:n] = obs
        row[n:] = 0.0
        if self.one_hot:
            row[self.raw_dim + task] = 1.0
        if self.options:
            row[self.obs_dim - self.options - 1 + int(self._prev_option[i])] = 1.0

    def _write_option(self, i: int, option: int) -> None:
        base = self.obs_dim - self.options - 1
        self._obs[i, base:] = 0.0
        self._obs[i, base + option] = 1.0
        self._prev_option[i] = option

    def current_env(self, i: int) -> gym.Env:
        """The env slot ``i`` is stepping now (e.g. for rendering)."""
        return self._env(i, int(self.task_ids[i]))

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset every slot. A new ``seed`` reseeds the slots' envs and task draws."""
        if seed is not None:
            self.seed = int(seed)
            self._slot_rng = [np.random.default_rng([self.seed, g]) for g in self.slots]
            self._fresh = set(self._envs)
        for i in range(self.num_envs):
            self._reset_slot(i)
        return self._obs.copy(), {"task_id": self.task_ids.copy()}

    def step(self, actions):
        n = self.num_envs
        chosen = None
        if self.options:  # (option, action) rows: keep the option, step with the action
            packed = np.asarray(actions)
            chosen = np.clip(np.rint(packed[:, 0]), 0, self.options - 1).astype(np.int64)
            actions = packed[:, 1:] if self._continuous else packed[:, 1]
        # Python scalars, not numpy ones: envs compare actions with IntEnums (MiniGrid) and
        # per-element numpy writes cost more than building small lists once.
        if self._continuous:
            acts = list(np.clip(actions, self.task_action_space.low, self.task_action_space.high))
        else:
            acts = np.asarray(actions).tolist()
        step_task = self.task_ids.copy()
        rewards, terminated, truncated, success = [0.0] * n, [False] * n, [False] * n, [0.0] * n
        done: list[int] = []
        final_rows: list[np.ndarray] = []
        ep: list[tuple[float, int, float]] = []
        envs, obs_buf = self._envs, self._obs
        ep_ret, ep_len, ep_succ = self._ep_ret, self._ep_len, self._ep_succ
        for i in range(n):
            task = int(step_task[i])
            obs, r, term, trunc, info = envs[(i, task)].step(acts[i])
            s = info["success"]
            rewards[i], terminated[i], truncated[i], success[i] = r, term, trunc, s
            ep_ret[i] += r
            ep_len[i] += 1
            if s:
                ep_succ[i] = True
            obs_buf[i, :obs.shape[0]] = obs
            if chosen is not None:
                self._write_option(i, int(chosen[i]))
            if term or trunc:
                done.append(i)
                final_rows.append(obs_buf[i].copy())
                ep.append((ep_ret[i], ep_len[i], float(ep_succ[i])))
                if self._weights is not None:
                    self.task_ids[i] = self._next_task(i)
                self._reset_slot(i)
        infos: dict[str, Any] = {"task_id": step_task, "success": np.asarray(success, np.float32)}
        if chosen is not None:
            infos["option"] = chosen
        if done:
            mask = np.zeros(n, bool)
            mask[done] = True
            final_obs = np.zeros((n, self.obs_dim), np.float32)
            final_obs[done] = np.stack(final_rows)
            ep_r, ep_l, ep_s = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.float32)
            ep_arr = np.asarray(ep)
            ep_r[done], ep_l[done], ep_s[done] = ep_arr[:, 0], ep_arr[:, 1], ep_arr[:, 2]
            infos["final_obs"] = final_obs
            infos["_final_obs"] = mask
            infos["episode"] = {"r": ep_r, "l": ep_l, "success": ep_s, "task_id": step_task}
            infos["_episode"] = mask
        return (obs_buf.copy(), np.asarray(rewards, np.float32), np.asarray(terminated, bool),
                np.asarray(truncated, bool), infos)

    def close_extras(self, **kwargs):
        for env in getattr(self, "_envs", {}).values():
            env.close()
        getattr(self, "_envs", {}).clear()
