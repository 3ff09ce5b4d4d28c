"""Gradient-conflict diagnostics of a ``[T, P]`` per-task gradient matrix.

- pairwise cosine matrix ``C_ij = g_i . g_j / (||g_i|| ||g_j||)`` (logged as an image),
- fraction of conflicting pairs (``C_ij < 0``, i < j),
- per-task gradient norm,
- condition number of G (ratio of largest to smallest non-zero singular value; Aligned-MTL's
  measure of how unevenly the task gradients span their subspace). Computed from the float64
  Gramian's eigenvalues, so singular values below ~``sqrt(10 T eps64)`` (~1e-7) of the largest
  count as zero: condition numbers up to ~1e7 are measured, beyond that G is rank-deficient here.
"""

from __future__ import annotations

import numpy as np
import torch


def diagnostics(G: torch.Tensor) -> dict[str, object]:
    """Diagnostics of the ``[T, P]`` matrix G (see :func:`gramian_diagnostics`)."""
    G = torch.nan_to_num(G.detach().double())
    return gramian_diagnostics(G @ G.T)


def gramian_diagnostics(M: torch.Tensor) -> dict[str, object]:
    """All four diagnostics from the Gramian ``M = G G^T`` alone (no pass over G): norms are
    ``sqrt(M_ii)``, cosines ``M_ij / (||g_i|| ||g_j||)``, and the singular values of G are the
    square roots of M's eigenvalues (those below ``10 T eps64 * max``, rounding noise, count as zero)."""
    M = torch.nan_to_num(M.detach().double())
    norms = torch.sqrt(M.diagonal().clamp_min(0.0))
    safe = norms.clamp_min(1e-12)
    cos = (M / (safe[:, None] * safe[None, :])).clamp(-1.0, 1.0)
    T = M.shape[0]
    iu = torch.triu_indices(T, T, 1)
    pair = cos[iu[0], iu[1]]
    live = (norms[iu[0]] > 0) & (norms[iu[1]] > 0)
    ev = torch.linalg.eigvalsh(M)
    ev = ev[ev > ev.max() * 10 * T * torch.finfo(torch.float64).eps] if ev.numel() and ev.max() > 0 else ev[:0]
    return {
        "cosine": cos.numpy(),
        "conflict_fraction": float((pair[live] < 0).double().mean()) if live.any() else 0.0,
        "grad_norm": norms.numpy(),
        "condition_number": float(torch.sqrt(ev.max() / ev.min())) if ev.numel() else float("nan"),
    }


def cosine_image(cos: np.ndarray) -> np.ndarray:
    """The cosine matrix as an RGB image ``[3, H, W]`` in [0, 1] (red negative, blue positive)."""
    c = np.clip(cos, -1, 1)
    img = np.stack([np.clip(-c, 0, 1), np.zeros_like(c), np.clip(c, 0, 1)]) * 0.85 + 0.15 * (1 - np.abs(c))
    scale = max(1, 96 // c.shape[0])
    return np.repeat(np.repeat(img, scale, 1), scale, 2).astype(np.float32)
