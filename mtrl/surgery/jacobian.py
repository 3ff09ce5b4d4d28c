"""The ``[T, P]`` matrix of per-task gradients at about the cost of one backward pass.

Each task's loss depends only on its own slice of a batch laid out ``[T, B/T, ...]``, so
``torch.func.vmap`` of ``torch.func.grad`` over the task axis computes all T gradients in one
batched backward (1.2x a plain backward of the mean loss at MT10 size, where T separate
``autograd.grad(retain_graph=True)`` calls or ``is_grads_batched`` cost 7-8x: see
``benchmarks/speed_surgery.py``). Uneven task batches are padded and masked by
:func:`group_by_task`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from mtrl.layout import one_task_per_call


def group_by_task(task_ids: torch.Tensor, num_tasks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices ``[T, n_max]`` of each task's rows and a validity mask. A task's slice is padded
    with its own last row (so every row of a slice is that task's data, see
    :func:`mtrl.layout.one_task_per_call`); a task with no rows gets row 0."""
    counts = torch.bincount(task_ids, minlength=num_tasks)
    n_max = max(int(counts.max()), 1)
    order = torch.argsort(task_ids, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(n_max, device=task_ids.device)[None, :]
    mask = pos < counts[:, None]
    last = (counts[:, None] - 1).clamp_min(0)
    own = order[(starts[:, None] + torch.minimum(pos, last)).clamp_max(len(task_ids) - 1)]
    idx = torch.where(counts[:, None] > 0, own, torch.zeros_like(pos))
    return idx, mask


def per_task_grads(module: nn.Module, params: list[str], task_loss: Callable, batch: dict[str, torch.Tensor],
                   extra: tuple = ()) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
    """Per-task gradients of ``module``'s named ``params`` (and the task losses), one vmapped backward.

    Args:
        module: the network; its other parameters and buffers are held fixed.
        params: names of the parameters to differentiate.
        task_loss: ``task_loss(call, task_batch, *extra) -> (scalar, aux dict)`` where
            ``call(*inputs)`` runs the module with the differentiated parameters and
            ``task_batch`` holds one task's ``[n, ...]`` slice of every tensor in ``batch`` (the
            module runs under :func:`mtrl.layout.one_task_per_call`: its rows are one task's, up
            to padding rows that the loss must mask);
            ``aux`` holds detached by-products (e.g. log-probabilities) to avoid a second forward.
        batch: tensors with a leading task axis ``[T, n, ...]``.
        extra: non-batched arguments passed through to ``task_loss``.

    Returns: ``({name: [T, *param.shape]}, losses [T], {aux key: [T, ...]})``.
    """
    all_params = dict(module.named_parameters())
    fixed = {k: v.detach() for k, v in all_params.items() if k not in params}
    fixed.update(dict(module.named_buffers()))
    diff = {k: all_params[k].detach() for k in params}

    def loss_of(p: dict[str, torch.Tensor], task_batch: dict[str, torch.Tensor]):
        def call(*inputs, **kw):
            return functional_call(module, {**fixed, **p}, inputs, kw)

        loss, aux = task_loss(call, task_batch, *extra)
        return loss, {k: v.detach() for k, v in aux.items()}

    with one_task_per_call():  # each vmapped call is one task's slice: per-task layers can use it
        (grads, (losses, aux)) = vmap(grad_and_value(loss_of, has_aux=True), in_dims=(None, 0))(diff, batch)
    return grads, losses.detach(), aux


def flatten_grads(grads: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    """``{name: [T, *shape]}`` -> ``[T, P]`` in the order of ``names``."""
    return torch.cat([grads[n].flatten(1) for n in names], 1)


def naive_per_task_grads(losses: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """Reference: T separate backward passes (``retain_graph``); ``[T, P]``. For tests and benchmarks."""
    rows = []
    for t in range(losses.shape[0]):
        g = torch.autograd.grad(losses[t], params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(g, params)]))
    return torch.stack(rows)
