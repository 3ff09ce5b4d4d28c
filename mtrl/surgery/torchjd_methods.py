"""Aggregators taken from torchjd (Jacobian descent library): its Gramian *weightings*.

- ``mgda``: MGDA (Sener & Koltun 2018), min-norm point of the convex hull of the g_i.
- ``alignedmtl``: Aligned-MTL (Senushkin et al. 2023): with ``G G^T = V L V^T``, the aligned
  matrix ``B G``, ``B = sqrt(l_min) V L^{-1/2} V^T``, has condition number 1; ``d = mean(B G)``.
- ``imtlg``: IMTL-G (Liu et al. 2021): weights summing to 1 whose combination has equal
  projections on every unit task gradient.
- ``upgrad``: UPGrad (Quinton & Rey 2024): mean of the projections of the g_i onto the dual
  cone of the rows of G (no task's loss increases to first order).

All four return mean-scale directions already. mtrl hands torchjd the Gramian of the active
rows (zero and non-finite rows removed: torchjd assumes a well-formed matrix) and applies the
weights itself. Aligned-MTL and IMTL-G invert the Gramian, so theirs is computed in float64
(a float32 Gramian gave 15% error on the direction at cond(G) = 3e3); UPGrad and MGDA project
onto cones and stay accurate in float32 (error 3e-4 at cond(G) = 3e3, 4e-3 at 3e4).
"""

from __future__ import annotations

import torch

from mtrl.surgery.base import Aggregator


class TorchJD(Aggregator):
    """Wraps a torchjd Gramian weighting (``torchjd.aggregation.*Weighting``) built by ``factory``:
    torchjd's aggregators are ``weighting(G G^T)^T G``, so mtrl hands it the Gramian it already
    has instead of the ``[T, P]`` matrix."""

    def __init__(self, name: str, factory, gramian_dtype: torch.dtype | None = None, **kwargs):
        self.name = name
        self.inner = factory(**kwargs)
        self.gramian_dtype = gramian_dtype

    def weights(self, M, active, losses):
        w = torch.zeros(M.shape[0], dtype=torch.float64)
        idx = torch.nonzero(active).flatten()
        w[idx] = 1.0 if len(idx) == 1 else self.inner(M[idx][:, idx]).double()
        return w


#: mtrl's defaults for torchjd's MGDA: a tighter tolerance (its default 1e-3 stops visibly short
#: of the min-norm point: g_i . d differed by up to 1.4% on a random 4 x 6 matrix)
MGDA_DEFAULTS = {"epsilon": 1e-6, "max_iters": 1000}


def weighting_class(name: str) -> type:
    """The torchjd weighting behind mtrl's method ``name`` (mgda, alignedmtl, imtlg, upgrad)."""
    from torchjd import aggregation

    return getattr(aggregation, {"mgda": "MGDAWeighting", "alignedmtl": "AlignedMTLWeighting",
                                 "imtlg": "IMTLGWeighting", "upgrad": "UPGradWeighting"}[name])


def mgda(**kw) -> TorchJD:
    """torchjd's MGDA with :data:`MGDA_DEFAULTS`."""
    return TorchJD("mgda", weighting_class("mgda"), **{**MGDA_DEFAULTS, **kw})


def alignedmtl(**kw) -> TorchJD:
    return TorchJD("alignedmtl", weighting_class("alignedmtl"), torch.float64, **kw)


def imtlg(**kw) -> TorchJD:
    return TorchJD("imtlg", weighting_class("imtlg"), torch.float64, **kw)


def upgrad(**kw) -> TorchJD:
    return TorchJD("upgrad", weighting_class("upgrad"), **kw)

