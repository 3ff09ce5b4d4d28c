"""Nash-MTL — Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022.

Weights ``alpha > 0`` with ``(G G^T) alpha = 1 / alpha`` (element-wise), update
``d = sum_i alpha_i g_i``. That equation is the stationarity condition of the convex problem
``min_{alpha > 0}  1/2 alpha^T M alpha - sum_i log alpha_i`` (M = G G^T), which mtrl solves
with damped Newton steps on the T x T system instead of the paper's sequence of cvxpy
programs (same fixed point; no cvxpy dependency). As in the paper, the weights can be
recomputed every ``update_every`` steps and reused in between. The paper sums; mtrl returns
``d / T`` (mean scale); ``max_norm`` optionally caps ``||d||`` as the reference code does.
"""

from __future__ import annotations

import torch

from mtrl.surgery.base import Aggregator


def nash_weights(M: torch.Tensor, iters: int = 50, eps: float = 1e-8) -> torch.Tensor:
    """Solve ``M alpha = 1 / alpha``, alpha > 0, by Newton's method with positivity damping."""
    n = M.shape[0]
    scale = torch.sqrt(torch.clamp(torch.diagonal(M).mean(), min=1e-20))
    Mn = M / scale**2  # scale-free problem; alpha scales back by 1/scale
    Mn = Mn + eps * torch.eye(n, dtype=M.dtype)
    a = torch.ones(n, dtype=M.dtype)
    for _ in range(iters):
        f = Mn @ a - 1.0 / a
        if f.abs().max() < 1e-9:
            break
        J = Mn + torch.diag(1.0 / a**2)
        step = torch.linalg.solve(J, f)
        t = 1.0
        while torch.any(a - t * step <= 0):
            t *= 0.5
        a = a - t * step
    return a / scale


class NashMTL(Aggregator):
    name = "nashmtl"

    def __init__(self, update_every: int = 1, max_norm: float = 0.0):
        self.update_every, self.max_norm = update_every, max_norm
        self.step = 0
        self.alpha: torch.Tensor | None = None

    def weights(self, M, active, losses):
        T = M.shape[0]
        if self.alpha is None or self.step % self.update_every == 0 or self.alpha.shape[0] != T:
            alpha = torch.zeros(T, dtype=torch.float64)
            alpha[active] = nash_weights(M[active][:, active])
            self.alpha = alpha
        self.step += 1
        w = self.alpha * active / T
        if self.max_norm > 0:
            norm = float(torch.sqrt(torch.clamp(w @ M @ w, min=0.0)))  # ||d|| from the Gramian
            if norm > self.max_norm:
                w = w * (self.max_norm / norm)
        return w

    def stats(self):
        return {} if self.alpha is None else {"surgery/weights": self.alpha.float().numpy()}

    def state_dict(self):
        return {"step": self.step, "alpha": self.alpha}

    def load_state_dict(self, state):
        self.step, self.alpha = state["step"], state["alpha"]
