"""Adam / AdamW for every learner, with PyTorch's fused kernel (Kingma & Ba 2015; AdamW:
Loshchilov & Hutter 2019).

    m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,   p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

On a CPU PyTorch defaults to a Python loop over the parameter tensors (``foreach`` is the default
on CUDA only); ``fused=True`` runs the whole step as one kernel per tensor group: the optimiser
step alone is 2.7-3.5x faster for MT-SAC's and MT-PPO's networks here, which is 1.08x on a
whole MT-SAC update with per-task networks (where the step is 8% of it) and within noise (0.96-
0.98x) for the shared ones (``benchmarks/speed_optim.py``, BENCHMARKS.md). Same
maths, so results change only by float rounding; the state dict has the same layout, so older
checkpoints load. Falls back to the default implementation where the fused kernel does not run
(e.g. a dtype it lacks).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def adam(params: Iterable[torch.nn.Parameter], lr: float, eps: float = 1e-8,
         weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (AdamW when ``weight_decay > 0``) over ``params``, fused where supported."""
    params = list(params)
    cls = torch.optim.AdamW if weight_decay else torch.optim.Adam
    kw = dict(lr=lr, eps=eps, **({"weight_decay": weight_decay} if weight_decay else {}))
    try:
        return cls(params, fused=True, **kw)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return cls(params, **kw)


def load_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """``opt.load_state_dict(state)`` keeping ``opt``'s own implementation: the saved param groups
    carry the ``fused`` / ``foreach`` flags of the optimiser that wrote them (``None`` for one
    written before fused Adam), which would otherwise switch the fused kernel off."""
    impl = {k: opt.defaults.get(k) for k in ("fused", "foreach")}
    opt.load_state_dict(state)
    for group in opt.param_groups:
        group.update(impl)
