"""Mixed-precision learner updates: bfloat16 matrix products, float32 weights, heads and losses.

``precision: bf16`` runs the update's forward and backward under ``torch.autocast`` with
bfloat16 (Kalamkar et al. 2019, "A Study of BFLOAT16 for Deep Learning Training"): matrix
products take bfloat16 inputs (accumulating in float32) and return bfloat16, and the elementwise
ops that follow them (ReLU, BroNet's LayerNorm and residual adds) then run in bfloat16 too.
Weights, optimiser state, the output layers, losses, the temperature update and gradient
surgery stay float32. On a CPU with AVX-512 BF16 (this project's 2-core CI machine) a 256x256
batched GEMM takes 330 vs 680 us and one MT-SAC update takes 0.73x the float32 time at 256x2
and 0.51x at the MT10 paper's 400x3 (``benchmarks/speed_optim.py``); on a CPU without
bfloat16 instructions it is likely slower, so measure before choosing it.

bfloat16 keeps 8 mantissa bits (relative precision 2^-8 ~ 0.4%): a Q value of 500 read in
bfloat16 is resolved to ~2, which would swamp small TD errors. So the output layers (critic
values / logits, the actor's mean and log-std) run in float32 through :func:`fp32`: the trunk's
features are rounded, the value read from them is not (the Bellman target, computed through the
bfloat16 trunks, differs from its float32 value by ~0.06 on average at Q ~ 300).

Backward runs inside the autocast region (the update's structure interleaves losses and
optimiser steps); its ops run in the dtypes autocast chose for the forward ops, which is what
autocast's own backward does. Extra losses (CAMRL's regulariser) run with autocast off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

PRECISIONS = ("fp32", "bf16", "auto")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions that make bfloat16 GEMMs pay


def check(precision: str) -> str:
    """``precision`` if known, else a ValueError naming the valid ones."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(repr(p) for p in PRECISIONS)}")
    return precision


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this (Linux x86) CPU has bfloat16 instructions (``/proc/cpuinfo`` flags); False
    where that cannot be read."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = {w for line in cpuinfo.splitlines() if line.startswith("flags") for w in line.split(":", 1)[-1].split()}
    return any(f in flags for f in BF16_CPU_FLAGS)


def resolve(precision: str, device_type: str = "cpu") -> str:
    """``auto`` -> ``bf16`` on a CPU with bfloat16 instructions, else ``fp32``; on a GPU always
    ``fp32``: at MT-SAC's sizes a GPU update is bound by launches, not arithmetic, and autocast's
    casts made it slower (17.1 vs 15.1 ms for the MT10 paper's learner on an H200,
    ``benchmarks/speed_device.py``). Others unchanged."""
    if check(precision) != "auto":
        return precision
    if device_type != "cpu":
        return "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def autocast(precision: str, device: str = "cpu") -> contextlib.AbstractContextManager:
    """The context an update runs in: bfloat16 autocast for ``bf16``, nothing for ``fp32`` (a
    resolved name: :func:`resolve` ``auto`` once, not on every update)."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"autocast needs a resolved precision ('fp32' or 'bf16'), got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def fp32(layer: Callable[..., torch.Tensor], x: torch.Tensor, *args) -> torch.Tensor:
    """``layer(x, *args)`` in float32 with autocast off (an output layer under ``bf16``); plain
    ``layer(x, *args)`` when autocast is not active."""
    if not torch.is_autocast_enabled(x.device.type):
        return layer(x, *args)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return layer(x.float(), *args)
