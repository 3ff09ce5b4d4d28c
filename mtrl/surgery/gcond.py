"""GCond — gradient conflict resolution by accumulation and arbitration (2025).

Per-task gradients are accumulated over ``accumulate`` calls (micro-batches) as exponential
averages ``a_i`` (stability) before deciding. Pairs whose accumulated gradients conflict
(cosine below ``-threshold``) are resolved from the most conflicting pair down: an arbiter
keeps the task whose accumulated gradient is stronger (larger norm) and projects the other
task's current gradient off it (``g_l <- g_l - (g_l . a_w / ||a_w||^2) a_w``). Update: the mean
of the resolved gradients. mtrl implements the deterministic mode; the stochastic mode
(one task per micro-batch) is left out (see the closing note of the surgery issue).
"""

from __future__ import annotations

import torch

from mtrl.surgery.base import Aggregator


class GCond(Aggregator):
    name = "gcond"
    gramian_based = False  # keeps state over the gradients themselves, not only their Gramian

    def __init__(self, threshold: float = 0.0, decay: float = 0.9):
        self.threshold, self.decay = threshold, decay
        self.acc: torch.Tensor | None = None
        self.resolved = 0

    def combine(self, G, active, losses):
        if self.acc is None or self.acc.shape != G.shape:
            self.acc = G.clone()
        else:
            self.acc.mul_(self.decay).add_(G, alpha=1 - self.decay)
        A = self.acc
        norms = A.norm(dim=1).clamp_min(1e-12)
        cos = (A @ A.T) / (norms[:, None] * norms[None, :])
        idx = torch.nonzero(active).flatten().tolist()
        pairs = sorted((float(cos[i, j]), i, j) for a, i in enumerate(idx) for j in idx[a + 1:]
                       if cos[i, j] < -self.threshold)
        out = G.clone()
        self.resolved = len(pairs)
        for _, i, j in pairs:
            win, lose = (i, j) if norms[i] >= norms[j] else (j, i)
            dot = out[lose] @ A[win]
            if dot < 0:
                out[lose] = out[lose] - dot / norms[win] ** 2 * A[win]
        return out[active].mean(0)

    def stats(self):
        return {"surgery/resolved_pairs": self.resolved}

    def state_dict(self):
        return {"acc": self.acc}

    def load_state_dict(self, state):
        self.acc = state["acc"]
