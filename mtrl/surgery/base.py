"""The aggregator interface: a ``[T, P]`` matrix of per-task gradients -> one ``[P]`` direction.

Convention: every aggregator returns its update on the scale of the *mean* task gradient
(``mean`` returns ``G.mean(0)``), so a learning rate tuned for plain multi-task training
carries over. Methods whose paper sums (PCGrad) divide by T; this is stated in each file.
Aggregators may keep state (momentum, weights, colourings): :meth:`state_dict` /
:meth:`load_state_dict` carry it through checkpoints. Rows that are zero or non-finite
(a task absent from the batch, a NaN loss) are treated as "no gradient" by :func:`sanitize`.
"""

from __future__ import annotations

from typing import Any

import torch


def sanitize(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace non-finite rows by zeros; returns ``(G, active)`` with ``active[t]`` = row t usable."""
    if bool(torch.isfinite(G).all()):  # the common case: one pass, no copy
        return G, G.norm(dim=1) > 0
    finite = torch.isfinite(G).all(1)
    G = torch.where(finite[:, None], G, torch.zeros_like(G))
    return G, finite & (G.norm(dim=1) > 0)


class Aggregator:
    """Base class. Subclasses implement :meth:`combine` on sanitized, active rows."""

    name = "base"
    #: True if the method needs the ``[T]`` task losses (loss-weighting methods).
    needs_losses = False

    def __call__(self, G: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        """Combine per-task gradients ``G [T, P]`` (and losses ``[T]``) into a direction ``[P]``."""
        if G.dim() != 2:
            raise ValueError(f"expected a [T, P] gradient matrix, got shape {tuple(G.shape)}")
        G, active = sanitize(G.detach())
        if not active.any():
            return torch.zeros(G.shape[1], dtype=G.dtype)
        if losses is not None:
            losses = torch.nan_to_num(losses.detach(), nan=0.0, posinf=0.0, neginf=0.0)
        d = self.combine(G, active, losses)
        return torch.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0)

    def combine(self, G: torch.Tensor, active: torch.Tensor, losses: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Method-specific scalars / ``[T]`` vectors for TensorBoard (e.g. task weights)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def gramian(G: torch.Tensor) -> torch.Tensor:
    """``G G^T`` as float64 (the small T x T matrix most methods solve on; the product itself
    runs in G's dtype: casting the whole ``[T, P]`` matrix cost more than the solve)."""
    return (G @ G.T).double()
