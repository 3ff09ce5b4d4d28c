"""Gradient surgery: per-task gradients (:mod:`.jacobian`) and how to combine them.

``mtrl.surgery.get(name, **kwargs)`` returns an aggregator mapping a ``[T, P]`` matrix of
per-task gradients (and, for loss-weighting methods, the ``[T]`` losses) to a ``[P]``
direction on the scale of the mean gradient. ``names()`` lists the methods.
"""

from __future__ import annotations

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
from mtrl.surgery.torchjd_methods import alignedmtl, imtlg, mgda, upgrad
from mtrl.surgery.weighting import FAMO, IGB, GradNorm, Uncertainty

_REGISTRY: dict[str, Callable[..., Aggregator]] = {
    "mean": Mean, "sum": Sum, "pcgrad": PCGrad, "cagrad": CAGrad,
    "fastcagrad": lambda **kw: CAGrad(**{"k": 4, **kw}), "mgda": mgda, "nashmtl": NashMTL,
    "alignedmtl": alignedmtl, "imtlg": imtlg, "upgrad": upgrad, "uncertainty": Uncertainty,
    "gradnorm": GradNorm, "famo": FAMO, "igb": IGB, "samgs": SAMGS, "gcond": GCond, "songoku": SONGOKU,
}


def names() -> list[str]:
    """Names accepted by :func:`get` (and the ``surgery`` config key)."""
    return list(_REGISTRY)


def get(name: str, **kwargs: Any) -> Aggregator:
    """Build the aggregator ``name`` with its parameters (e.g. ``get("cagrad", c=0.9)``)."""
    if name not in _REGISTRY:
        raise MtrlError(f"unknown surgery method {name!r}; {did_you_mean(name, names())}valid methods: {choices(names())}")
    try:
        return _REGISTRY[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise MtrlError(f"bad parameters for surgery {name!r}: {exc}") from None


__all__ = ["Aggregator", "diagnostics", "get", "names"]
