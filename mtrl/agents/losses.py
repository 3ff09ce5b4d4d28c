"""Per-task reduction of per-sample losses: the ``[T]`` loss vector gradient surgery works on."""

from __future__ import annotations

import torch


def per_task_mean(x: torch.Tensor, task_ids: torch.Tensor, num_tasks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``x`` over the rows of each task: ``L_t = sum_{i: task_i=t} x_i / n_t``.

    Returns ``(losses [T], present [T] bool)``; a task with no row has loss 0 and ``present=False``.
    """
    sums = torch.zeros(num_tasks, dtype=x.dtype, device=x.device).index_add_(0, task_ids, x)
    counts = torch.zeros(num_tasks, dtype=x.dtype, device=x.device).index_add_(0, task_ids, torch.ones_like(x))
    present = counts > 0
    return sums / counts.clamp_min(1.0), present


def mean_of_present(task_losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """The plain multi-task objective: the mean of the task losses over tasks in the batch."""
    return task_losses[present].mean()
