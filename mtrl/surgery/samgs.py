"""SAM-GS — Borsani et al. 2025, "Similarity-Aware Momentum Gradient Surgery".

Gradient magnitude similarity of tasks i, j: ``s_ij = 2 ||g_i|| ||g_j|| / (||g_i||^2 + ||g_j||^2)``
(1 for equal norms, -> 0 when one dominates). If the mean pairwise similarity is below
``gamma`` the magnitudes conflict: every g_i is rescaled to the mean norm and the result
averaged. Otherwise the update is modulated by momentum: an exponential first moment
``m <- beta m + (1 - beta) G`` of the gradient matrix, update ``mean_i m_i / (1 - beta^t)`` (mtrl's reading of
"Adam-like first moment"; the second moment is left to the optimiser). Mean scale.
"""

from __future__ import annotations

import torch

from mtrl.surgery.base import Aggregator


class SAMGS(Aggregator):
    name = "samgs"
    gramian_based = False  # keeps state over the gradients themselves, not only their Gramian

    def __init__(self, gamma: float = 0.9, beta: float = 0.9):
        self.gamma, self.beta = gamma, beta
        self.m: torch.Tensor | None = None
        self.t = 0
        self.last_similarity = float("nan")

    def combine(self, G, active, losses):
        rows = G[active]
        norms = rows.norm(dim=1)
        n = rows.shape[0]
        if n > 1:
            a, b = norms[:, None], norms[None, :]
            s = 2 * a * b / (a**2 + b**2)
            mean_sim = float((s.sum() - n) / (n * (n - 1)))
        else:
            mean_sim = 1.0
        self.last_similarity = mean_sim
        if self.m is None or self.m.shape != G.shape:
            self.m, self.t = torch.zeros_like(G), 0
        self.m.mul_(self.beta).add_(G, alpha=1 - self.beta)
        self.t += 1
        if mean_sim < self.gamma:
            return (rows / norms[:, None] * norms.mean()).mean(0)
        return self.m[active].mean(0) / (1 - self.beta**self.t)  # bias-corrected, as Adam

    def stats(self):
        return {"surgery/magnitude_similarity": self.last_similarity}

    def state_dict(self):
        return {"m": self.m, "t": self.t}

    def load_state_dict(self, state):
        self.m, self.t = state["m"], state["t"]
