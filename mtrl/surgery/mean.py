"""Mean of the task gradients: ``d = (1/T) sum_i g_i`` (plain multi-task training, the baseline)."""

from mtrl.surgery.base import Aggregator


class Mean(Aggregator):
    name = "mean"

    def combine(self, G, active, losses):
        return G.mean(0)


class Sum(Aggregator):
    """``d = sum_i g_i`` (T times the mean; for comparison with papers that sum)."""

    name = "sum"

    def combine(self, G, active, losses):
        return G.sum(0)

