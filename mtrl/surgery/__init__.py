"""Gradient surgery: per-task gradients (:mod:`.jacobian`) and how to combine them.

``mtrl.surgery.get(name, **kwargs)`` returns an aggregator mapping a ``[T, P]`` matrix of
per-task gradients (and, for loss-weighting methods, the ``[T]`` losses) to a ``[P]``
direction on the scale of the mean gradient. ``names()`` lists the methods.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mtrl.errors import MtrlError, choices, did_you_mean
from mtrl.surgery.base import Aggregator
from mtrl.surgery.cagrad import CAGrad
from mtrl.surgery.diagnostics import diagnostics
from mtrl.surgery.gcond import GCond
from mtrl.surgery.mean import Mean, Sum
from mtrl.surgery.nashmtl import NashMTL
from mtrl.surgery.pcgrad import PCGrad
from mtrl.surgery.samgs import SAMGS
from mtrl.surgery.songoku import SONGOKU
from mtrl.surgery.torchjd_methods import (
    MGDA_DEFAULTS,
    alignedmtl,
    imtlg,
    mgda,
    upgrad,
    weighting_class,
)
from mtrl.surgery.weighting import FAMO, IGB, GradNorm, Uncertainty

_REGISTRY: dict[str, Callable[..., Aggregator]] = {
    "mean": Mean, "sum": Sum, "pcgrad": PCGrad, "cagrad": CAGrad,
    "fastcagrad": lambda **kw: CAGrad(**{"k": 4, **kw}), "mgda": mgda, "nashmtl": NashMTL,
    "alignedmtl": alignedmtl, "imtlg": imtlg, "upgrad": upgrad, "uncertainty": Uncertainty,
    "gradnorm": GradNorm, "famo": FAMO, "igb": IGB, "samgs": SAMGS, "gcond": GCond, "songoku": SONGOKU,
}


#: methods whose registry entry wraps another factory: (that factory, the wrapper's own defaults)
_WRAPPED: dict[str, tuple[Callable[[], Callable[..., Any]], dict[str, Any]]] = {
    "fastcagrad": (lambda: CAGrad, {"k": 4}),
    "mgda": (lambda: weighting_class("mgda"), MGDA_DEFAULTS),
    **{n: (lambda n=n: weighting_class(n), {}) for n in ("alignedmtl", "imtlg", "upgrad")},
}


def names() -> list[str]:
    """Names accepted by :func:`get` (and the ``surgery`` config key)."""
    return list(_REGISTRY)


def _check(name: str) -> None:
    if name not in _REGISTRY:
        raise MtrlError(f"unknown surgery method {name!r}; {did_you_mean(name, names())}valid methods: {choices(names())}")


def get(name: str, **kwargs: Any) -> Aggregator:
    """Build the aggregator ``name`` with its parameters (e.g. ``get("cagrad", c=0.9)``)."""
    _check(name)
    try:
        return _REGISTRY[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise MtrlError(f"bad parameters for surgery {name!r}: {exc}") from None


def defaults(name: str) -> dict[str, Any]:
    """The value each parameter of method ``name`` takes when ``surgery_args`` leaves it out, read
    from the constructor's signature (for wrapped methods: the wrapped factory's, then the
    wrapper's own), so ``surgery_args: {c: 0.5}`` and no ``surgery_args`` can be told apart from a
    real difference (``mtrl compare``)."""
    _check(name)
    factory, own = _WRAPPED.get(name, (lambda: _REGISTRY[name], {}))
    params = inspect.signature(factory()).parameters.values()
    return {**{p.name: p.default for p in params if p.default is not inspect.Parameter.empty}, **own}


__all__ = ["Aggregator", "defaults", "diagnostics", "get", "names"]
