"""Mean of the task gradients: ``d = (1/T) sum_i g_i`` (plain multi-task training, the baseline)."""

import torch

from mtrl.surgery.base import Aggregator


class Mean(Aggregator):
    name = "mean"

    def weights(self, M, active, losses):
        return torch.full((M.shape[0],), 1.0 / M.shape[0], dtype=torch.float64)


class Sum(Aggregator):
    """``d = sum_i g_i`` (T times the mean; for comparison with papers that sum)."""

    name = "sum"

    def weights(self, M, active, losses):
        return torch.ones(M.shape[0], dtype=torch.float64)
