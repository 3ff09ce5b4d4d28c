"""Success-based: more experience where the windowed success rate is low.

    p_i = (1 - eps) softmax_i(-s_i / tau) + eps / T

with s_i the task's windowed success rate (a task with no finished episode yet counts as
s_i = 0), temperature ``tau`` (small: nearly all weight on the worst task; large: uniform)
and a floor ``eps`` of uniform sampling so solved tasks keep being checked (and rehearsed).
A common hand-made curriculum (e.g. the "success-rate" teacher baselines in Matiisen et al.,
arXiv 1707.00183); it favours tasks that are hard *now*, including ones not yet learnable,
which is what learning-progress and mastering-rate schedulers try to fix.
"""

from __future__ import annotations

import numpy as np

from mtrl.curriculum.base import Scheduler, TaskStats, check_range, mix_uniform


class SuccessScheduler(Scheduler):
    name = "success"
    state_attrs = ("_p",)

    def __init__(self, task_names, tau: float = 0.2, eps: float = 0.1):
        super().__init__(task_names)
        self.tau = check_range("tau", tau, 0.0, 1e9, lo_open=True)
        self.eps = check_range("eps", eps, 0.0, 1.0)
        self._p: np.ndarray | None = None

    def update(self, stats: TaskStats) -> None:
        s = np.nan_to_num(np.asarray(stats.success, np.float64), nan=0.0)
        z = -s / self.tau
        e = np.exp(z - z.max())
        self._p = mix_uniform(e / e.sum(), self.eps)

    def weights(self) -> np.ndarray | None:
        return None if self._p is None else self._p.copy()
