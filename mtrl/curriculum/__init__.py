"""Task schedulers (curricula): which task each env slot runs next.

``mtrl.curriculum.get(name, task_names, task_graph=None, **kwargs)`` returns a
:class:`~mtrl.curriculum.base.Scheduler`; presets select one with ``curriculum: NAME`` and
``curriculum_args: {...}`` (``task_graph`` comes from the env preset). See each module for its
paper and formula.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from mtrl.curriculum.base import Scheduler, TaskStats, check_weights
from mtrl.curriculum.camrl import CAMRL
from mtrl.curriculum.learning_progress import LearningProgress
from mtrl.curriculum.mastering_rate import MasteringRate
from mtrl.curriculum.plr import PLR
from mtrl.curriculum.success import SuccessScheduler
from mtrl.curriculum.uniform import Uniform
from mtrl.errors import MtrlError, choices, did_you_mean

SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.name: cls for cls in (Uniform, SuccessScheduler, LearningProgress, MasteringRate, PLR, CAMRL)
}


def names() -> list[str]:
    return list(SCHEDULERS)


def get(name: str, task_names: Sequence[str], task_graph: Mapping[str, Sequence[str]] | None = None,
        default_seed: int | None = None, **kwargs: Any) -> Scheduler:
    """The scheduler ``name`` over ``task_names``; unknown names and arguments give an MtrlError.
    A scheduler that draws random numbers gets ``default_seed`` (the run's seed) unless
    ``kwargs`` name a ``seed``."""
    if name not in SCHEDULERS:
        raise MtrlError(f"unknown curriculum {name!r}; {did_you_mean(name, SCHEDULERS)}valid curricula: {choices(SCHEDULERS)}")
    cls = SCHEDULERS[name]
    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "task_names")]
    bad = [k for k in kwargs if k not in params or k == "task_graph"]
    if bad:
        valid = [p for p in params if p != "task_graph"]
        raise MtrlError(f"curriculum {name!r} has no argument {bad[0]!r}; {did_you_mean(bad[0], valid)}valid arguments: {choices(valid) or 'none'}")
    if "task_graph" in params:
        kwargs["task_graph"] = task_graph
    if "seed" in params and "seed" not in kwargs and default_seed is not None:
        kwargs["seed"] = default_seed
    try:
        return cls(list(task_names), **kwargs)
    except (TypeError, ValueError) as exc:
        raise MtrlError(f"bad curriculum_args for {name!r}: {exc}") from None


__all__ = ["SCHEDULERS", "Scheduler", "TaskStats", "check_weights", "get", "names"]
