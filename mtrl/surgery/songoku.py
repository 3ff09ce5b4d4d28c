"""SON-GOKU — scheduling tasks by graph colouring of their gradient conflicts (2025).

Keeps an exponential moving average ``e_i`` of each task's gradient. Every ``recolor_every``
steps it builds the conflict graph (an edge where ``cos(e_i, e_j) < -tau``) and colours it
greedily in Welsh-Powell order (highest degree first), so tasks in one colour class do not
conflict. Each step updates one colour class, cycling through the classes; inside the
class the chosen ``inner`` aggregator (mean by default) combines its tasks' gradients.
The class mean is scaled by ``|class| / T`` so that cycling through all classes adds up to
the mean-scale update over a cycle.
"""

from __future__ import annotations

import torch

from mtrl.surgery.base import Aggregator


def welsh_powell(adj: torch.Tensor) -> list[list[int]]:
    """Greedy colouring, vertices by decreasing degree; returns the colour classes."""
    n = adj.shape[0]
    order = sorted(range(n), key=lambda v: -int(adj[v].sum()))
    colour = [-1] * n
    for v in order:
        used = {colour[u] for u in range(n) if adj[v, u] and colour[u] >= 0}
        c = 0
        while c in used:
            c += 1
        colour[v] = c
    return [[v for v in range(n) if colour[v] == c] for c in range(max(colour) + 1)]


class SONGOKU(Aggregator):
    name = "songoku"
    gramian_based = False  # keeps state over the gradients themselves, not only their Gramian

    def __init__(self, tau: float = 0.0, recolor_every: int = 20, ema: float = 0.9):
        self.tau, self.recolor_every, self.ema = tau, recolor_every, ema
        self.e: torch.Tensor | None = None
        self.classes: list[list[int]] = []
        self.step = 0

    def combine(self, G, active, losses):
        T = G.shape[0]
        if self.e is None or self.e.shape != G.shape:
            self.e = G.clone()
        else:
            self.e.mul_(self.ema).add_(G, alpha=1 - self.ema)
        if not self.classes or self.step % self.recolor_every == 0:
            n = self.e.norm(dim=1).clamp_min(1e-12)
            cos = (self.e @ self.e.T) / (n[:, None] * n[None, :])
            adj = (cos < -self.tau) & ~torch.eye(T, dtype=torch.bool)
            self.classes = welsh_powell(adj)
        cls = [t for t in self.classes[self.step % len(self.classes)] if active[t]]
        self.step += 1
        if not cls:
            return torch.zeros(G.shape[1], dtype=G.dtype)
        return G[cls].mean(0) * (len(cls) / T)

    def stats(self):
        return {"surgery/colour_classes": len(self.classes)}

    def state_dict(self):
        return {"e": self.e, "classes": self.classes, "step": self.step}

    def load_state_dict(self, state):
        self.e, self.classes, self.step = state["e"], state["classes"], state["step"]
