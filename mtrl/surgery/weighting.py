"""Loss-weighting methods: they learn task weights ``w`` from the losses and return
``d = (1/T) sum_i w_i g_i`` (mean scale; ``w = 1`` is the mean). Each keeps its own small state.

- ``uncertainty`` — Kendall, Gal & Cipolla, CVPR 2018: loss ``sum_i L_i / (2 sigma_i^2) + log sigma_i``
  with ``s_i = log sigma_i^2`` learned (one SGD/Adam-free gradient step of size ``lr`` per call:
  ``ds_i = 1/2 - L_i exp(-s_i) / 2``); the network gets ``w_i = exp(-s_i)`` (x 1/2 folded in lr).
- ``gradnorm`` — Chen et al., ICML 2018: weights trained so that ``||w_i g_i||`` follows
  ``mean_j ||w_j g_j|| * r_i^alpha`` with ``r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))``; the
  L1 GradNorm loss' gradient wrt w_i is ``sign(w_i ||g_i|| - target_i) ||g_i||``; weights are
  renormalised to sum to T. (The paper uses the last shared layer; mtrl has the full matrix.)
- ``famo`` — Liu et al., NeurIPS 2023 (Fast Adaptive Multitask Optimization): ``z = softmax(xi)``,
  update direction ``sum_i c z_i g_i / L_i`` (the gradient of ``sum_i z_i log L_i``, normalised by
  ``c = 1 / sum_i z_i / L_i``); after each step ``xi <- xi - lr (J_z^T delta + gamma xi)`` with
  ``delta_i = log L_i(prev) - log L_i(now)`` (here: the next call's losses). Needs positive
  losses: in RL apply it to the critic loss (losses are clamped at ``eps``).
- ``igb`` — Dai et al. 2023, "Improvable Gap Balancing", heuristic v1: ``w = T softmax(L / L_base)``
  with ``L_base`` the losses of the first ``base_steps`` calls (averaged), objective
  ``sum_i w_i log L_i``, hence ``d = (1/T) sum_i w_i g_i / L_i``.
"""

from __future__ import annotations

import torch

from mtrl.surgery.base import Aggregator


class _Weighted(Aggregator):
    needs_losses = True
    w: torch.Tensor | None = None

    def _require(self, losses: torch.Tensor | None) -> torch.Tensor:
        if losses is None:
            raise ValueError(f"surgery '{self.name}' weights tasks by their losses; pass the [T] loss vector")
        return losses.double()

    def stats(self):
        return {} if self.w is None else {"surgery/weights": self.w.float().numpy()}


class Uncertainty(_Weighted):
    name = "uncertainty"

    def __init__(self, lr: float = 1e-3):
        self.lr = lr
        self.s: torch.Tensor | None = None  # log sigma^2

    def weights(self, M, active, losses):
        L = self._require(losses)
        T = M.shape[0]
        if self.s is None:
            self.s = torch.zeros(T, dtype=torch.float64)
        self.w = torch.exp(-self.s)
        self.s = self.s - self.lr * (0.5 - 0.5 * L * torch.exp(-self.s)) * active
        return self.w / T

    def state_dict(self):
        return {"s": self.s}

    def load_state_dict(self, state):
        self.s = state["s"]


class GradNorm(_Weighted):
    name = "gradnorm"

    def __init__(self, alpha: float = 1.5, lr: float = 0.025):
        self.alpha, self.lr = alpha, lr
        self.L0: torch.Tensor | None = None

    def weights(self, M, active, losses):
        L = self._require(losses).abs().clamp_min(1e-12)
        T = M.shape[0]
        if self.w is None:
            self.w = torch.ones(T, dtype=torch.float64)
        if self.L0 is None:
            self.L0 = L.clone()
        d = self.w / T
        gn = torch.sqrt(M.diagonal().clamp_min(0.0))  # ||g_i||
        wn = self.w * gn
        ratio = L / self.L0
        r = ratio / ratio[active].mean()
        target = wn[active].mean() * r**self.alpha
        self.w = (self.w - self.lr * torch.sign(wn - target) * gn / gn[active].mean().clamp_min(1e-12) * active).clamp_min(1e-3)
        self.w = self.w * T / self.w.sum()
        return d

    def state_dict(self):
        return {"w": self.w, "L0": self.L0}

    def load_state_dict(self, state):
        self.w, self.L0 = state["w"], state["L0"]


class FAMO(_Weighted):
    name = "famo"

    def __init__(self, lr: float = 0.025, gamma: float = 1e-3, eps: float = 1e-8):
        self.lr, self.gamma, self.eps = lr, gamma, eps
        self.xi: torch.Tensor | None = None
        self.prev: torch.Tensor | None = None

    def weights(self, M, active, losses):
        L = self._require(losses).clamp_min(self.eps)
        T = M.shape[0]
        if self.xi is None:
            self.xi = torch.zeros(T, dtype=torch.float64)
        if self.prev is not None:  # logit update from the loss change since the last step
            delta = (self.prev.log() - L.log()) * active
            z = torch.softmax(self.xi, 0)
            jz_t_delta = z * (delta - (z * delta).sum())  # J_softmax^T delta
            self.xi = self.xi - self.lr * (jz_t_delta + self.gamma * self.xi)
        z = torch.softmax(self.xi, 0)
        c = 1.0 / (z / L)[active].sum()
        self.w = T * c * z / L  # weights on g_i; sum_i w_i / T ... mean scale
        self.prev = L.clone()
        return self.w / T

    def state_dict(self):
        return {"xi": self.xi, "prev": self.prev}

    def load_state_dict(self, state):
        self.xi, self.prev = state["xi"], state["prev"]


class IGB(_Weighted):
    name = "igb"

    def __init__(self, base_steps: int = 10, eps: float = 1e-8):
        self.base_steps, self.eps = base_steps, eps
        self.sum = None
        self.n = 0

    def weights(self, M, active, losses):
        L = self._require(losses).clamp_min(self.eps)
        T = M.shape[0]
        if self.n < self.base_steps:
            self.sum = L.clone() if self.sum is None else self.sum + L
            self.n += 1
        base = self.sum / self.n
        self.w = T * torch.softmax(L / base, 0)
        return self.w / L / T

    def state_dict(self):
        return {"sum": self.sum, "n": self.n}

    def load_state_dict(self, state):
        self.sum, self.n = state["sum"], state["n"]
