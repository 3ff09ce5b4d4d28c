"""What every task scheduler sees and does.

After each training iteration the trainer hands the scheduler a :class:`TaskStats` (per-task
success, returns, losses, env steps, the learner's per-task TD/GAE magnitudes) and then asks
it for per-task sampling weights. Weights go to every runner's vector env, whose slots draw
their next task from them at each episode end (``MultiTaskVectorEnv.set_task_weights``); a
zero weight makes a task inactive. ``None`` means "no preference": every task keeps exactly
``envs_per_task`` fixed slots (the behaviour without a curriculum).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtrl.errors import MtrlError


@dataclass
class TaskStats:
    """Per-task statistics after one training iteration (arrays of length T; NaN = unknown).

    Attributes:
        step: environment steps so far, summed over tasks.
        iteration: training iterations so far (1 after the first).
        success: windowed success rate (the trainer's ``episode_window`` episodes).
        returns: windowed mean episode return.
        episodes: episodes finished so far, per task.
        env_steps: environment steps so far, per task.
        new: episodes finished in this iteration, ``{task: [[return, success, length], ...]}``.
        loss: the learner's per-task loss this iteration (MT-PPO: the PPO loss; MT-SAC: critic).
        score: the learner's per-task error magnitude: MT-PPO the mean |GAE advantage| of the
            task's steps in this rollout, MT-SAC the RMS TD error of its replay samples.
        sampled: env steps of each task in this iteration (0: the task was not sampled).
    """

    step: int
    iteration: int
    success: np.ndarray
    returns: np.ndarray
    episodes: np.ndarray
    env_steps: np.ndarray
    new: dict[int, np.ndarray] = field(default_factory=dict)
    loss: np.ndarray | None = None
    score: np.ndarray | None = None
    sampled: np.ndarray | None = None


def check_weights(weights: Any, num_tasks: int, who: str = "scheduler") -> np.ndarray:
    """Return ``weights`` as a probability vector, or raise: never renormalise a bad vector.

    Refused: a wrong length, any NaN/inf, any negative entry, an all-zero vector.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (num_tasks,):
        raise MtrlError(f"{who} gave {w.shape} task weights for {num_tasks} tasks")
    if not np.all(np.isfinite(w)):
        raise MtrlError(f"{who} gave non-finite task weights {np.round(w, 4).tolist()}")
    if np.any(w < 0):
        raise MtrlError(f"{who} gave negative task weights {np.round(w, 4).tolist()}")
    if w.sum() <= 0:
        raise MtrlError(f"{who} gave all-zero task weights: at least one task must stay active")
    return w / w.sum()


class Scheduler:
    """Base class: ``update(stats)`` after each iteration, then ``weights()``.

    Subclasses list their mutable attributes in ``state_attrs``; :meth:`state_dict` deep-copies
    them, so a checkpoint restores the scheduler exactly.
    """

    name = "base"
    state_attrs: tuple[str, ...] = ()

    def __init__(self, task_names: Sequence[str]):
        self.task_names = list(task_names)
        self.num_tasks = len(self.task_names)

    def attach(self, agent: Any) -> None:
        """Called once with the learner, before training (a scheduler that shapes the loss, like
        CAMRL's transfer regulariser, installs itself here)."""

    def update(self, stats: TaskStats) -> None:
        """Read one iteration's statistics."""

    def weights(self) -> np.ndarray | None:
        """Per-task sampling probabilities (sum 1), or None for fixed balanced slots."""
        return None

    def log(self) -> dict[str, Any]:
        """Extra TensorBoard values: ``[T]`` arrays become per-task scalars, 2-D arrays images."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {k: copy.deepcopy(getattr(self, k)) for k in self.state_attrs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self.state_attrs:
            setattr(self, k, copy.deepcopy(state[k]))


def mix_uniform(p: np.ndarray, eps: float) -> np.ndarray:
    """``(1 - eps) p + eps / T``: keeps every task sampled, so its statistics stay fresh."""
    return (1.0 - eps) * p + eps / len(p)


def check_range(name: str, value: float, lo: float, hi: float, lo_open: bool = False) -> float:
    """A scheduler argument in ``[lo, hi]`` (or ``(lo, hi]``), else a one-line error."""
    v = float(value)
    if not (lo < v <= hi if lo_open else lo <= v <= hi) or not np.isfinite(v):
        raise MtrlError(f"curriculum_args.{name} must be in {'(' if lo_open else '['}{lo}, {hi}], got {value}")
    return v
