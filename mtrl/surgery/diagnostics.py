"""Gradient-conflict diagnostics of a ``[T, P]`` per-task gradient matrix.

- pairwise cosine matrix ``C_ij = g_i . g_j / (||g_i|| ||g_j||)`` (logged as an image),
- fraction of conflicting pairs (``C_ij < 0``, i < j),
- per-task gradient norm,
- condition number of G (ratio of largest to smallest non-zero singular value; Aligned-MTL's
  measure of how unevenly the task gradients span their subspace).
"""

from __future__ import annotations

import numpy as np
import torch


def diagnostics(G: torch.Tensor) -> dict[str, object]:
    G = torch.nan_to_num(G.detach().double())
    norms = G.norm(dim=1)
    safe = norms.clamp_min(1e-12)
    cos = (G @ G.T) / (safe[:, None] * safe[None, :])
    T = G.shape[0]
    iu = torch.triu_indices(T, T, 1)
    pair = cos[iu[0], iu[1]]
    live = (norms[iu[0]] > 0) & (norms[iu[1]] > 0)
    sv = torch.linalg.svdvals(G)
    sv = sv[sv > sv.max() * 1e-10] if sv.numel() and sv.max() > 0 else sv[:0]
    return {
        "cosine": cos.numpy(),
        "conflict_fraction": float((pair[live] < 0).double().mean()) if live.any() else 0.0,
        "grad_norm": norms.numpy(),
        "condition_number": float(sv.max() / sv.min()) if sv.numel() else float("nan"),
    }


def cosine_image(cos: np.ndarray) -> np.ndarray:
    """The cosine matrix as an RGB image ``[3, H, W]`` in [0, 1] (red negative, blue positive)."""
    c = np.clip(cos, -1, 1)
    img = np.stack([np.clip(-c, 0, 1), np.zeros_like(c), np.clip(c, 0, 1)]) * 0.85 + 0.15 * (1 - np.abs(c))
    scale = max(1, 96 // c.shape[0])
    return np.repeat(np.repeat(img, scale, 1), scale, 2).astype(np.float32)
