"""Sampling: :class:`Runner` (in-process or Ray actor) and :class:`RunnerPool`."""

from mtrl.runners.pool import RunnerPool, init_ray
from mtrl.runners.runner import Runner, merge_rollouts

__all__ = ["Runner", "RunnerPool", "init_ray", "merge_rollouts"]
