"""Absolute learning progress (ALP): sample tasks whose success is changing fastest.

Teacher-Student Curriculum Learning (Matiisen et al., arXiv 1707.00183) and its absolute
learning-progress form for discrete task sets (Kanitscheider et al., arXiv 2106.14876; ALP-GMM,
Portelas et al., arXiv 1910.07224). For each task, two exponential moving averages of the
success of its newly finished episodes, updated once per iteration in which the task finished
episodes (x_i = their mean success):

    f_i <- f_i + a_fast (x_i - f_i),   l_i <- l_i + a_slow (x_i - l_i),   LP_i = |f_i - l_i|
    p_i = (1 - eps) LP_i / sum_j LP_j + eps / T       (uniform while sum_j LP_j = 0)

Both averages start at the task's first observation, so a task starts with LP = 0. The
absolute value counts forgetting (success falling) as progress too, so a forgotten task is
rehearsed. Choices made here (the papers update per episode; we update per iteration with the
iteration's mean, which weighs iterations, not episodes): a_fast = 0.1, a_slow = 0.02,
eps = 0.2 (Kanitscheider et al. mix in a uniform share; Matiisen et al.'s tuned window
setting uses eps = 0.5 with epsilon-greedy).
"""

from __future__ import annotations

import numpy as np

from mtrl.curriculum.base import Scheduler, TaskStats, check_range, mix_uniform


class LearningProgress(Scheduler):
    name = "learning-progress"
    state_attrs = ("fast", "slow", "seen")

    def __init__(self, task_names, fast: float = 0.1, slow: float = 0.02, eps: float = 0.2):
        super().__init__(task_names)
        self.a_fast = check_range("fast", fast, 0.0, 1.0, lo_open=True)
        self.a_slow = check_range("slow", slow, 0.0, 1.0, lo_open=True)
        if self.a_slow >= self.a_fast:
            from mtrl.errors import MtrlError

            raise MtrlError(f"curriculum_args.slow ({slow}) must be smaller than fast ({fast})")
        self.eps = check_range("eps", eps, 0.0, 1.0)
        T = self.num_tasks
        self.fast, self.slow, self.seen = np.zeros(T), np.zeros(T), np.zeros(T, bool)

    def update(self, stats: TaskStats) -> None:
        for t, rows in stats.new.items():
            x = float(np.mean(rows[:, 1]))
            if not self.seen[t]:
                self.fast[t] = self.slow[t] = x
                self.seen[t] = True
            else:
                self.fast[t] += self.a_fast * (x - self.fast[t])
                self.slow[t] += self.a_slow * (x - self.slow[t])

    def progress(self) -> np.ndarray:
        return np.abs(self.fast - self.slow)

    def weights(self) -> np.ndarray | None:
        lp = self.progress()
        if lp.sum() <= 0:
            return np.full(self.num_tasks, 1.0 / self.num_tasks)
        return mix_uniform(lp / lp.sum(), self.eps)

    def log(self) -> dict:
        return {"curriculum/learning_progress": self.progress()}
