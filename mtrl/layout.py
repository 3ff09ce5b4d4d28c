"""What a caller knows about how a batch's rows are laid out by task, for the networks to use.

Per-task layers (:class:`mtrl.agents.networks.TaskLinear`, PaCo's composed weights in
:mod:`mtrl.agents.archs`) are fastest when they know the rows of a call belong to tasks in a
fixed pattern; checking the task ids themselves costs a GPU wait, and under ``torch.func.vmap``
it is impossible (no data-dependent branches). The caller that built the batch states the
layout in a ``with`` block instead:

- :func:`task_major`: a batch of ``rows`` rows is ``[0]*n + [1]*n + ...`` (MT-SAC's replay
  batches, checked on the host);
- :func:`one_task_per_call`: every call of the network is one task's slice (the vmapped per-task
  gradients of gradient surgery, :func:`mtrl.surgery.jacobian.per_task_grads`), and networks may
  run all its rows with the first row's task. The slice of an uneven batch is padded with that
  task's own last row (:func:`mtrl.surgery.jacobian.group_by_task`); a task with no rows at all
  gets another task's row 0 as padding, computed with that task's weights, which is harmless
  because the loss masks padding and such a task's loss is not used (``present``).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

_TASK_MAJOR_ROWS: contextvars.ContextVar[int | None] = contextvars.ContextVar("task_major_rows", default=None)
_ONE_TASK: contextvars.ContextVar[bool] = contextvars.ContextVar("one_task_per_call", default=False)


@contextlib.contextmanager
def task_major(rows: int | None) -> Iterator[None]:
    """Within this block, a ``rows``-row batch's task ids are ``[0]*n + [1]*n + ...`` (the caller
    checked them, e.g. on the host before copying them to a GPU); None: nothing is known."""
    token = _TASK_MAJOR_ROWS.set(rows)
    try:
        yield
    finally:
        _TASK_MAJOR_ROWS.reset(token)


@contextlib.contextmanager
def one_task_per_call() -> Iterator[None]:
    """Within this block, each call of a network is one task's slice: it may use its first row's task
    for every row (see the module docstring for padding)."""
    token = _ONE_TASK.set(True)
    try:
        yield
    finally:
        _ONE_TASK.reset(token)


def is_one_task_per_call() -> bool:
    """Whether the current call is one task's slice (see :func:`one_task_per_call`)."""
    return _ONE_TASK.get()


def is_task_major(task_ids: torch.Tensor, num_tasks: int) -> bool:
    """Whether ``task_ids`` is ``[0]*n + ... + [T-1]*n`` (equal counts, task-major): known from
    :func:`task_major`, else checked (never call it under ``vmap``: see :func:`one_task_per_call`)."""
    n = task_ids.shape[0]
    if n == 0 or n % num_tasks:
        return False
    return _TASK_MAJOR_ROWS.get() == n or torch.equal(
        task_ids, torch.arange(num_tasks, device=task_ids.device).repeat_interleave(n // num_tasks))
