"""Plugging surgery into a learner: per-task gradients of one loss -> aggregator -> ``.grad``.

Shared parameters get the aggregated direction; task-specific parameters (per-task heads,
flagged ``task_specific = True`` on their module) get only their own task's gradient, at the
same scale as the mean (``(1/T) dL_t/dtheta_t``). With ``surgery: mean`` and no diagnostics
due, learners keep the plain ``loss.mean().backward()`` path (no Jacobian needed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mtrl.surgery.base import Aggregator, block_gramian
from mtrl.surgery.diagnostics import gramian_diagnostics
from mtrl.surgery.jacobian import naive_per_task_grads, per_task_grads
from mtrl.surgery.mean import Mean


def task_specific_names(module: nn.Module) -> set[str]:
    """Names of parameters owned by submodules flagged ``task_specific`` (or named in ``task_specific_params``)."""
    out: set[str] = set()
    for mname, m in module.named_modules():
        prefix = f"{mname}." if mname else ""
        if getattr(m, "task_specific", False):
            out.update(prefix + n for n, _ in m.named_parameters(recurse=False))
        for n in getattr(m, "task_specific_params", ()):
            out.add(prefix + n)
    return out


class SurgeryStep:
    """Per-task gradients of ``module`` for one loss, combined by ``aggregator``."""

    def __init__(self, module: nn.Module, aggregator: Aggregator, diagnostics_every: int = 0,
                 jacobian: str = "vmap"):
        if jacobian not in ("vmap", "loop"):
            raise ValueError(f"jacobian must be 'vmap' or 'loop', got {jacobian!r}")
        self.module, self.agg, self.diag_every, self.jacobian = module, aggregator, diagnostics_every, jacobian
        specific = task_specific_names(module)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.shared = [n for n, _ in named if n not in specific]
        self.specific = [n for n, _ in named if n in specific]
        self.params = dict(named)
        self.calls = 0
        self._diag_due: bool | None = None  # set by active() for the update in progress
        # Data-parallel learners: averages tensors over the learners in place. The per-task gradient
        # blocks and losses are averaged before aggregation, so the aggregator sees the global ones.
        self.sync: Callable[[list[torch.Tensor]], None] | None = None

    def active(self) -> bool:
        """Whether this update needs the Jacobian (surgery, or diagnostics due). Learners call it
        once per update, plain or not: it advances the diagnostics schedule (``calls`` counts
        updates, so ``surgery: mean`` logs diagnostics every ``diagnostics_every`` updates too)."""
        due = self.diag_every > 0 and self.calls % self.diag_every == 0
        self.calls += 1
        needed = not isinstance(self.agg, Mean) or due
        self._diag_due = due if needed else None  # a plain update leaves no flag for a later direct call
        return needed

    def __call__(self, task_loss: Callable, batch: dict[str, torch.Tensor], extra: tuple = (),
                 present: torch.Tensor | None = None) -> dict[str, Any]:
        """Compute per-task grads and losses, write ``.grad``.

        ``task_loss(call, task_batch, *extra) -> (loss, aux)`` (see :func:`per_task_grads`).
        Returns ``{"losses": [T], "aux": {...}, "stats": {...}, "applied": bool}``; ``stats``
        holds the aggregator's scalars and, when due, ``_diagnostics``. If the loss of a task in
        ``present`` (default: all) is non-finite, nothing is aggregated or written
        (``applied=False``) and the aggregator's state is untouched: the learner skips the step.
        """
        diag_due, self._diag_due = self._diag_due, None
        counted = diag_due is not None  # True: active() already counted this update
        if not counted:  # called directly, without active()
            diag_due = self.diag_every > 0 and self.calls % self.diag_every == 0
        names = self.shared + self.specific
        if self.jacobian == "vmap":
            grads, losses, aux = per_task_grads(self.module, names, task_loss, batch, extra)
        else:  # T backward passes through one graph: the slow reference path (benchmarks, vmap fallback)
            T = next(iter(batch.values())).shape[0]
            outs = [task_loss(self.module, {k: v[t] for k, v in batch.items()}, *extra) for t in range(T)]
            losses_t = torch.stack([o[0] for o in outs])
            aux = {k: torch.stack([o[1][k].detach() for o in outs]) for k in outs[0][1]}
            losses = losses_t.detach()
            rows = naive_per_task_grads(losses_t, [self.params[n] for n in names])
            grads, off = {}, 0
            for n in names:
                k = self.params[n].numel()
                grads[n] = rows[:, off:off + k].view(T, *self.params[n].shape)
                off += k
        # the aggregator's maths in float32 even when the losses ran under bfloat16 autocast
        with torch.autocast(device_type=losses.device.type, enabled=False):
            return self._apply(grads, losses, aux, present, counted, diag_due)

    def _apply(self, grads: dict[str, torch.Tensor], losses: torch.Tensor, aux: dict, present: torch.Tensor | None,
               counted: bool, diag_due: bool) -> dict[str, Any]:
        """Aggregate the per-task ``grads`` and write ``.grad`` (the second half of :meth:`__call__`)."""
        if self.sync is not None:
            grads = {n: g.clone() for n, g in grads.items()}  # vmap's outputs may be views of one buffer
            losses = losses.clone()
            self.sync([*grads.values(), losses])
        check = losses if present is None else losses[present]
        if not bool(torch.isfinite(check).all()):
            return {"losses": losses, "aux": aux, "stats": {}, "applied": False}
        if not counted:
            self.calls += 1
        blocks = [grads[n] for n in self.shared]
        directions = self.agg.aggregate(blocks, losses if self.agg.needs_losses else None)
        for n, d in zip(self.shared, directions):
            # a fresh tensor, or a contiguous slice of one (no copy); fused Adam needs it contiguous
            self.params[n].grad = d if d.is_contiguous() else d.contiguous()
        for n in self.specific:
            p = self.params[n]
            p.grad = torch.nan_to_num(grads[n]).mean(0)
        stats: dict[str, Any] = dict(self.agg.stats())
        if diag_due:  # from the Gramian: one extra pass over the gradients every diag_every calls
            M, good = block_gramian(blocks, torch.float64)
            diag = gramian_diagnostics(M)
            diag["grad_norm"][~good.numpy()] = float("nan")  # non-finite gradient: no norm to show
            stats["_diagnostics"] = diag
        return {"losses": losses, "aux": aux, "stats": stats, "applied": True}

    def state_dict(self) -> dict[str, Any]:
        return {"agg": self.agg.state_dict(), "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agg.load_state_dict(state["agg"])
        self.calls = state["calls"]
