"""The aggregator interface: per-task gradients ``[T, P]`` -> one ``[P]`` direction.

Convention: every aggregator returns its update on the scale of the *mean* task gradient
(``mean`` returns ``G.mean(0)``), so a learning rate tuned for plain multi-task training
carries over. Methods whose paper sums (PCGrad) divide by T; this is stated in each file.
Aggregators may keep state (momentum, weights, colourings): :meth:`state_dict` /
:meth:`load_state_dict` carry it through checkpoints. Rows that are zero or non-finite
(a task absent from the batch, a NaN loss) are treated as "no gradient".

Most methods are *Gramian-based* (``gramian_based = True``): the direction is
``d = w^T G`` with weights ``w`` computed from the ``T x T`` Gramian ``M = G G^T`` (and the
losses) alone. For those, :meth:`Aggregator.aggregate` never builds the ``[T, P]`` matrix:
it takes the per-task gradients as per-parameter blocks, accumulates ``M`` block by block
(which also yields the row norms and the finiteness check: a row with a NaN or inf has a
non-finite diagonal entry), and writes ``w^T G_b`` per block: two passes over the gradients
in all. The others (momentum or accumulation of gradients: SAM-GS, GCond, SON-GOKU)
implement :meth:`Aggregator.combine` on the concatenated matrix.
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


def _rows(b: torch.Tensor) -> torch.Tensor:
    return b.reshape(b.shape[0], -1)


def block_gramian(blocks: list[torch.Tensor], dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gramian ``sum_b G_b G_b^T`` (float64 ``[T, T]``) of per-task gradient blocks ``[T, ...]``,
    and ``good[t]``: row t has a finite squared norm (no NaN/inf entry, and ``||g_t||^2`` does
    not overflow the product dtype, ~1.8e19 in float32: such a row counts as bad too). Rows and
    columns of bad rows are zeroed, which leaves the Gramian of the sanitized matrix (for good
    rows ``|M_ij| <= sqrt(M_ii M_jj)`` stays finite). The products run in the blocks' dtype unless
    ``dtype`` is given: casting ``[T, P]`` to float64 costs more than any of the T x T solves,
    so only methods that invert an ill-conditioned Gramian ask for it. The products run on the
    blocks' device; the small ``[T, T]`` result is returned on the CPU, where every method's
    ``T x T`` solve runs (one device-to-host copy per update on a GPU learner)."""
    M = torch.zeros(blocks[0].shape[0], blocks[0].shape[0], dtype=torch.float64, device=blocks[0].device)
    for b in blocks:
        r = _rows(b) if dtype is None else _rows(b).to(dtype)  # one cast per block
        M += r @ r.T
    M = M.cpu()
    good = torch.isfinite(M.diagonal())
    if not bool(good.all()):
        M = torch.where(good[:, None] & good[None, :], M, torch.zeros_like(M))
    return M, good


def weighted_rows(w: torch.Tensor, b: torch.Tensor, good: torch.Tensor) -> torch.Tensor:
    """``sum_t w_t b[t]`` over the finite rows only (a zero weight times NaN is still NaN)."""
    if bool(good.all()):
        return (w.to(b.device, b.dtype) @ _rows(b)).view(b.shape[1:])
    return (w[good].to(b.device, b.dtype) @ _rows(b[good.to(b.device)])).view(b.shape[1:])


class Aggregator:
    """Base class. Gramian-based subclasses implement :meth:`weights`; others :meth:`combine`."""

    name = "base"
    #: True if the method needs the ``[T]`` task losses (loss-weighting methods).
    needs_losses = False
    #: True if :meth:`weights` (on the Gramian) defines the method; False: :meth:`combine` on G.
    gramian_based = True
    #: dtype of the Gramian's products (None: the gradients' own, float32 for mtrl's learners).
    gramian_dtype: torch.dtype | None = None

    def __call__(self, G: torch.Tensor, losses: torch.Tensor | None = None) -> torch.Tensor:
        """Combine per-task gradients ``G [T, P]`` (and losses ``[T]``) into a direction ``[P]``."""
        if G.dim() != 2:
            raise ValueError(f"expected a [T, P] gradient matrix, got shape {tuple(G.shape)}")
        return self.aggregate([G], losses)[0]

    def aggregate(self, blocks: list[torch.Tensor], losses: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per-task gradients as blocks ``[T, *shape_b]`` (e.g. one per parameter) -> the
        direction's blocks ``[*shape_b]``; always finite."""
        blocks = [b.detach() for b in blocks]
        if losses is not None:  # on the CPU, beside the Gramian (a GPU learner's are [T] on the GPU)
            losses = torch.nan_to_num(losses.detach().cpu(), nan=0.0, posinf=0.0, neginf=0.0)
        if self.gramian_based:
            M, good = block_gramian(blocks, self.gramian_dtype)
            active = good & (M.diagonal() > 0)
            if not active.any():
                return [torch.zeros(b.shape[1:], dtype=b.dtype, device=b.device) for b in blocks]
            w = self.weights(M, active, losses).double()
            # a non-finite weight drops its task (not the whole update); inactive rows get exactly 0
            w = torch.where(active & torch.isfinite(w), w, torch.zeros_like(w))
            return [torch.nan_to_num(weighted_rows(w, b, good), nan=0.0, posinf=0.0, neginf=0.0) for b in blocks]
        G = torch.cat([_rows(b) for b in blocks], 1) if len(blocks) > 1 else _rows(blocks[0])
        # Choice: the methods that keep gradient-sized state (SAM-GS, GCond, SON-GOKU) run on the CPU
        # whatever the learner's device (one [T, P] copy each way per update on a GPU learner): their
        # small solves and state then need no device bookkeeping, at the cost of that copy.
        device, G = G.device, G.cpu()
        G, active = sanitize(G)
        if not active.any():
            d = torch.zeros(G.shape[1], dtype=G.dtype)
        else:
            d = torch.nan_to_num(self.combine(G, active, losses), nan=0.0, posinf=0.0, neginf=0.0)
        d = d.to(device)
        out, off = [], 0
        for b in blocks:
            k = _rows(b).shape[1]
            out.append(d[off:off + k].view(b.shape[1:]))
            off += k
        return out

    def weights(self, M: torch.Tensor, active: torch.Tensor, losses: torch.Tensor | None) -> torch.Tensor:
        """Gramian-based methods: ``[T]`` weights (float64) with ``d = w^T G``, from ``M = G G^T``
        (rows of inactive tasks are zero in M); ``active[t]``: task t has a usable gradient.
        Weights of inactive tasks are ignored; a non-finite weight drops that task."""
        raise NotImplementedError

    def combine(self, G: torch.Tensor, active: torch.Tensor, losses: torch.Tensor | None) -> torch.Tensor:
        """Other methods: the direction ``[P]`` from the sanitized matrix G (zero rows inactive)."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """Method-specific scalars / ``[T]`` vectors for TensorBoard (e.g. task weights)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def gramian(G: torch.Tensor) -> torch.Tensor:
    """``G G^T`` as float64 (the product itself runs in G's dtype)."""
    return (G @ G.T).double()
