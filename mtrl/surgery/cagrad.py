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

from mtrl.surgery.base import Aggregator


class CAGrad(Aggregator):
    name = "cagrad"

    def __init__(self, c: float = 0.5, k: int | None = None, seed: int = 0, rescale: bool = True):
        if c < 0:
            raise ValueError(f"CAGrad c must be >= 0, got {c}")
        self.c, self.k, self.rescale = c, k, rescale
        self.rng = np.random.default_rng(seed)

    def _groups(self, active: torch.Tensor) -> torch.Tensor:
        """``A [n, T]``: the rows of ``H = A G`` the objective uses (all active tasks, or with
        ``k``: k random tasks plus the mean of the rest)."""
        idx = torch.nonzero(active).flatten()
        eye = torch.eye(active.shape[0], dtype=torch.float64)
        if self.k is None or self.k >= len(idx) - 1:
            return eye[idx]
        perm = idx[torch.as_tensor(self.rng.permutation(len(idx)))]
        pick, rest = perm[: self.k], perm[self.k:]
        return torch.cat([eye[pick], eye[rest].mean(0, keepdim=True)])

    def weights(self, M, active, losses):
        g0 = active.double() / active.sum()  # g0 = mean of the active task gradients
        if self.c == 0:
            return g0
        A = self._groups(active)
        MH = A @ M @ A.T  # Gramian of H = A G
        b = MH.mean(1).numpy()  # h_i . mean(H) (= h_i . g0 without k)
        Mn = MH.numpy()
        n = Mn.shape[0]
        g0_norm = np.sqrt(max(b.mean(), 1e-20))
        sqrt_phi = self.c * g0_norm

        def obj(w):
            return w @ b + sqrt_phi * np.sqrt(max(w @ Mn @ w, 1e-20))

        res = minimize(obj, np.full(n, 1.0 / n), bounds=[(0, 1)] * n, method="SLSQP",
                       constraints={"type": "eq", "fun": lambda w: w.sum() - 1})
        gw = torch.as_tensor(res.x, dtype=torch.float64) @ A  # g_w = gw^T G
        gw_norm = torch.sqrt(torch.clamp(gw @ M @ gw, min=0.0))
        w = g0 + sqrt_phi / (gw_norm + 1e-12) * gw
        return w / (1 + self.c**2) if self.rescale else w
