"""Per-task replay buffer: one numpy ring buffer per task, task-balanced sampling.

Storage is one preallocated array per field with a leading task axis (``[T, capacity, ...]``),
so adding and sampling are vectorised numpy operations with no per-transition Python objects.
A task-balanced batch comes back laid out ``[T * per_task]`` task-major, i.e. reshapeable to
``[T, per_task, ...]``, the layout per-task losses and gradient surgery use.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mtrl.errors import MtrlError

FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")


def _physical_memory() -> int:
    """This machine's RAM in bytes (0 where unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


class PerTaskReplay:
    """Ring buffers of ``capacity`` transitions for each of ``num_tasks`` tasks.

    Args:
        num_tasks: T.
        capacity: transitions kept per task (oldest overwritten first).
        obs_dim: observation width.
        action_dim: action width (continuous actions).
    """

    def __init__(self, num_tasks: int, capacity: int, obs_dim: int, action_dim: int):
        self.num_tasks, self.capacity = num_tasks, capacity
        # The arrays are allocated lazily (np.zeros: pages are committed as data arrives), so a
        # large capacity costs memory only as it fills; one that could never fit is refused now,
        # not hours later when the run is killed for memory.
        need = num_tasks * capacity * (2 * obs_dim + action_dim + 2) * 4
        have = _physical_memory()
        if have and need > have:
            raise MtrlError(f"the replay buffer would need {need / 2**30:.1f} GiB when full ({num_tasks} tasks x "
                            f"{capacity:,} transitions x {2 * obs_dim + action_dim + 2} float32), more than this "
                            f"machine's {have / 2**30:.1f} GiB; lower sac.buffer_per_task")
        self.obs = np.zeros((num_tasks, capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((num_tasks, capacity, obs_dim), np.float32)
        self.actions = np.zeros((num_tasks, capacity, action_dim), np.float32)
        self.rewards = np.zeros((num_tasks, capacity), np.float32)
        self.terminated = np.zeros((num_tasks, capacity), np.float32)
        self.pos = np.zeros(num_tasks, np.int64)  # next write index per task
        self.size = np.zeros(num_tasks, np.int64)

    def add(self, task_ids: np.ndarray, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
            next_obs: np.ndarray, terminated: np.ndarray) -> None:
        """Add a batch of transitions (any mix of tasks), each to its own task's ring."""
        task_ids = np.asarray(task_ids)
        for t in np.unique(task_ids):
            rows = np.flatnonzero(task_ids == t)
            n = len(rows)
            idx = (self.pos[t] + np.arange(n)) % self.capacity
            if n > self.capacity:  # only the newest `capacity` survive
                rows, idx = rows[-self.capacity:], idx[-self.capacity:]
            self.obs[t, idx] = obs[rows]
            self.actions[t, idx] = actions[rows]
            self.rewards[t, idx] = rewards[rows]
            self.next_obs[t, idx] = next_obs[rows]
            self.terminated[t, idx] = terminated[rows]
            self.pos[t] = (self.pos[t] + n) % self.capacity
            self.size[t] = min(self.size[t] + n, self.capacity)

    def sample(self, per_task: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``per_task`` transitions from every task (with replacement), task-major ``[T * per_task]``.

        Raises ``ValueError`` if a task has no data yet.
        """
        if np.any(self.size == 0):
            empty = np.flatnonzero(self.size == 0).tolist()
            raise ValueError(f"tasks {empty} have no transitions yet")
        T = self.num_tasks
        idx = (rng.random((T, per_task)) * self.size[:, None]).astype(np.int64)
        tt = np.repeat(np.arange(T), per_task).reshape(T, per_task)
        out = {f: getattr(self, f)[tt, idx].reshape(T * per_task, *getattr(self, f).shape[2:]) for f in FIELDS}
        out["task_ids"] = tt.reshape(-1)
        return out

    def __len__(self) -> int:
        return int(self.size.sum())

    def save(self, path: Path) -> None:
        """Write the filled part of the buffer to ``path`` (.npz) atomically (each task's ring fills
        from index 0, so the first ``max(size)`` slots hold every stored transition)."""
        tmp = Path(str(path) + ".tmp.npz")
        m = int(self.size.max())
        np.savez(tmp, pos=self.pos, size=self.size, capacity=self.capacity,
                 **{f: getattr(self, f)[:, :m] for f in FIELDS})
        tmp.replace(path)

    def load(self, path: Path) -> None:
        with np.load(path) as data:
            shape = data["obs"].shape  # (T, filled, obs_dim); files before the filled-part save: (T, capacity, .)
            if (int(data["capacity"]) != self.capacity or shape[0] != self.num_tasks or shape[2:] != self.obs.shape[2:]
                    or shape[1] > self.capacity):
                raise ValueError(f"replay buffer {path} holds {shape} of capacity {int(data['capacity'])}, expected "
                                 f"{self.obs.shape}")
            for f in FIELDS:
                getattr(self, f)[:, :shape[1]] = data[f]
            self.pos[...] = data["pos"]
            self.size[...] = data["size"]
