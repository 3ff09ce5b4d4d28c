"""PCGrad — Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020, Algorithm 1.

For each task i, over the other tasks j in random order: if ``g_i^PC . g_j < 0``,
``g_i^PC <- g_i^PC - (g_i^PC . g_j / ||g_j||^2) g_j`` (g_j the original gradient).
The paper's update is ``sum_i g_i^PC``; mtrl returns ``(1/T) sum_i g_i^PC`` (mean scale).

Computed on the T x T Gramian as weights (``g_i^PC = sum_j c_ij g_j``), so the cost is O(T^2)
on the small matrix plus one ``[T] x [T, P]`` product. Agrees with torchjd's PCGrad (x T).
"""

from __future__ import annotations

import torch

from mtrl.surgery.base import Aggregator


class PCGrad(Aggregator):
    name = "pcgrad"

    def __init__(self, seed: int = 0):
        self.gen = torch.Generator().manual_seed(seed)

    def weights(self, M: torch.Tensor, active: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        T = M.shape[0]
        w = torch.zeros(T, dtype=M.dtype)
        idx = torch.nonzero(active).flatten().tolist()
        for i in idx:
            c = torch.zeros(T, dtype=M.dtype)
            c[i] = 1.0
            for j in torch.randperm(T, generator=self.gen).tolist():
                if j == i or not active[j]:
                    continue
                dot = M[j] @ c  # g_i^PC . g_j
                if dot < 0:
                    c[j] -= dot / M[j, j]
            w += c
        return w / T


    def state_dict(self):
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state):
        self.gen.set_state(state["gen"])
