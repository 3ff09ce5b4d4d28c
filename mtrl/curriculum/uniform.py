"""Uniform: every task gets the same share of experience.

``resample: false`` (default): no weights are sent, so every task keeps exactly
``envs_per_task`` fixed slots (stratified uniform; a run is bit-for-bit the run without a
curriculum). ``resample: true``: slots draw their next task with p_i = 1/T at each episode end
(uniform in expectation, with sampling noise), the baseline other schedulers perturb.
"""

from __future__ import annotations

import numpy as np

from mtrl.curriculum.base import Scheduler


class Uniform(Scheduler):
    name = "uniform"

    def __init__(self, task_names, resample: bool = False):
        super().__init__(task_names)
        self.resample = bool(resample)

    def weights(self) -> np.ndarray | None:
        return np.full(self.num_tasks, 1.0 / self.num_tasks) if self.resample else None
