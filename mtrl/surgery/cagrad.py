"""CAGrad — Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021.

With ``g0`` the mean gradient and ``phi = c^2 ||g0||^2``, find simplex weights
``w* = argmin_w  g_w . g0 + sqrt(phi) ||g_w||`` (``g_w = sum_i w_i g_i``) and return
``d = g0 + (sqrt(phi) / ||g_w*||) g_w*``, rescaled by ``1 / (1 + c^2)`` as in the authors'
code (with c = 0 this is exactly the mean). MT10 used c = 0.9, MT50 c = 0.5.

The convex problem in w lives on the T-simplex and needs only the Gramian; solved with
SciPy's SLSQP (as the reference implementation does) rather than cvxpy (torchjd's CAGrad
needs cvxpy, an optional heavy dependency). Fast CAGrad (``k``): the objective uses
``k`` random tasks plus the mean of the others (Liu et al., section 3.3).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from mtrl.surgery.base import Aggregator, gramian


class CAGrad(Aggregator):
    name = "cagrad"

    def __init__(self, c: float = 0.5, k: int | None = None, seed: int = 0, rescale: bool = True):
        if c < 0:
            raise ValueError(f"CAGrad c must be >= 0, got {c}")
        self.c, self.k, self.rescale = c, k, rescale
        self.rng = np.random.default_rng(seed)

    def _groups(self, G: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        rows = G[active]
        if self.k is None or self.k >= rows.shape[0] - 1:
            return rows
        perm = self.rng.permutation(rows.shape[0])
        pick, rest = perm[: self.k], perm[self.k:]
        return torch.cat([rows[pick], rows[rest].mean(0, keepdim=True)])

    def combine(self, G, active, losses):
        g0 = G[active].mean(0)
        if self.c == 0:
            return g0
        H = self._groups(G, active)
        M = gramian(H).numpy()
        n = M.shape[0]
        b = M.mean(1)  # g_i . g0 for the rows of H (g0 = their mean: exact without k)
        g0_norm = np.sqrt(max(b.mean(), 1e-20))
        sqrt_phi = self.c * g0_norm

        def obj(w):
            return w @ b + sqrt_phi * np.sqrt(max(w @ M @ w, 1e-20))

        res = minimize(obj, np.full(n, 1.0 / n), bounds=[(0, 1)] * n, method="SLSQP",
                       constraints={"type": "eq", "fun": lambda w: w.sum() - 1})
        w = torch.as_tensor(res.x, dtype=G.dtype)
        gw = w @ H
        d = g0 + sqrt_phi / (gw.norm() + 1e-12) * gw
        return d / (1 + self.c**2) if self.rescale else d
