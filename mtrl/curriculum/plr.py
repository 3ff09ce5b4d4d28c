"""Prioritized Level Replay applied to tasks (Jiang et al., arXiv 2010.03934).

A task's score is the learner's error magnitude on its latest experience: for MT-PPO the
mean absolute GAE advantage over the task's steps in the rollout (PLR's "positive value loss"
family; the paper's L1 value loss, eq. 2: S = 1/T sum_t |sum_{k>=t} (gamma lambda)^{k-t} delta_k|),
for MT-SAC the RMS TD error. With c the current iteration and C_i the iteration the task was
last sampled:

    P_S(i) = h(S_i)^(1/beta) / sum_j h(S_j)^(1/beta),   h(S_i) = 1 / rank(S_i)  (rank 1 = largest)
    P_C(i) = (c - C_i) / sum_j (c - C_j)                 (staleness; uniform when all are fresh)
    P(i)   = (1 - rho) P_S(i) + rho P_C(i)

Defaults are the paper's MiniGrid setting, beta = 0.1 and rho = 0.3. Tasks never scored rank
first (PLR visits unseen levels first). Choices made here: the score of a task is replaced
(not averaged) each time it is sampled, as in the paper; staleness counts iterations, not
episodes; rank ties are broken by task index.
"""

from __future__ import annotations

import numpy as np

from mtrl.curriculum.base import Scheduler, TaskStats, check_range


class PLR(Scheduler):
    name = "plr"
    state_attrs = ("scores", "last_seen", "iteration")

    def __init__(self, task_names, beta: float = 0.1, rho: float = 0.3):
        super().__init__(task_names)
        self.beta = check_range("beta", beta, 0.0, 1e9, lo_open=True)
        self.rho = check_range("rho", rho, 0.0, 1.0)
        self.scores = np.full(self.num_tasks, np.inf)
        self.last_seen = np.zeros(self.num_tasks, np.int64)
        self.iteration = 0

    def update(self, stats: TaskStats) -> None:
        self.iteration = stats.iteration
        if stats.score is None or stats.sampled is None:
            return
        for t in np.flatnonzero(np.asarray(stats.sampled) > 0):
            if np.isfinite(stats.score[t]):
                self.scores[t] = float(stats.score[t])
                self.last_seen[t] = stats.iteration

    def score_probs(self) -> np.ndarray:
        order = np.argsort(-self.scores, kind="stable")  # inf (unscored) first
        rank = np.empty(self.num_tasks)
        rank[order] = np.arange(1, self.num_tasks + 1)
        h = (1.0 / rank) ** (1.0 / self.beta)
        return h / h.sum()

    def staleness_probs(self) -> np.ndarray:
        stale = (self.iteration - self.last_seen).astype(np.float64)
        return stale / stale.sum() if stale.sum() > 0 else np.full(self.num_tasks, 1.0 / self.num_tasks)

    def weights(self) -> np.ndarray | None:
        if self.iteration == 0:
            return None
        return (1 - self.rho) * self.score_probs() + self.rho * self.staleness_probs()

    def log(self) -> dict:
        return {"curriculum/plr_score": np.where(np.isfinite(self.scores), self.scores, np.nan)}
