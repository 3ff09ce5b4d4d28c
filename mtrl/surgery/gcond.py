"""GCond (Gradient Conductor) — Limarenko & Studenikina, "GCond: Gradient Conflict Resolution via
Accumulation-based Stabilization for Large-Scale Multi-Task Learning", arXiv 2509.07252 (2025),
section II (smooth logic, eqs. 3-9; defaults of the paper's Table 7 / reference code).

Greedy conflict loop, at most ``max_iters`` times: among the task gradients (as modified so
far) take the pair with the lowest cosine ``c`` (eq. 3); stop when ``c >= theta_weak``. Map
``c`` to an effective angle (eq. 4), thresholds ``(theta_crit, theta_main, theta_weak)``:

- ``c < theta_crit``: ``alpha = pi``;
- ``theta_crit <= c < theta_main``: ``alpha = pi/2 + pi/2 ((c - theta_main) / (theta_crit - theta_main))^p``;
- ``theta_main <= c < theta_weak``: ``alpha = pi/2 (1 - (c - theta_main) / (theta_weak - theta_main))``,

strengths ``s_w = sin(alpha)``, ``s_l = sin(min(alpha, pi/2))`` (eqs. 5-6), and project both,
from their values before the step: ``g_w <- g_w - s_w (g_w.g_l / ||g_l||^2) g_l``,
``g_l <- g_l - s_l (g_w.g_l / ||g_w||^2) g_w`` (mild zone: symmetric partial projection;
critical zone: PCGrad on the loser only). The arbiter picks the winner by
``score_i = 0.8 max(0, S_i) + 0.2 N_i`` (eqs. 7-9): stability ``S_i`` = cosine of the task's
current vector with its resolved gradient of the previous call, strength
``N_i = r_i / (r_i + r_j)`` with ``r = ||g|| / EMA_0.95(||g||)``; optionally a dominance window
(a task that won the last ``dominance`` arbitrations loses the next). Update: the mean of the
resolved gradients (the paper sums loss-weighted gradients with weights summing to 1: the
same scale), optionally through the paper's internal bias-corrected momentum (``momentum``;
off by default because mtrl's Adam already has beta1 = 0.9, the paper sets beta1 = 0 instead).

All modifications are linear in the original rows, so the loop runs on a ``T x T``
coefficient matrix ``C`` (resolved rows ``C G``) and the Gramian: the only passes over
``[T, P]`` are the Gramian, the products with last call's resolved rows, and ``C G``.

Not implemented, by design: the paper's accumulation of each task's gradient over K
micro-batches at fixed weights (eq. 1) is the gradient of the K-times larger batch, so in
mtrl it is a larger ``batch_per_task`` (MT-SAC) or fewer ``minibatches`` (MT-PPO); the
*stochastic* mode (one task's backward per micro-batch) exists to save T-1 of the T backward
passes, which mtrl's vmapped Jacobian already avoids (all T gradients cost ~1.2 backwards).
"""

from __future__ import annotations

import math

import torch

from mtrl.surgery.base import Aggregator, gramian


class GCond(Aggregator):
    name = "gcond"
    gramian_based = False  # the arbiter's stability term needs last call's resolved rows

    def __init__(self, thresholds: tuple[float, float, float] = (-0.8, -0.5, 0.0), power: float = 2.0,
                 tie_weights: tuple[float, float] = (0.8, 0.2), norm_beta: float = 0.95, max_iters: int = 3,
                 dominance: int = 0, momentum: float = 0.0, eps: float = 1e-8):
        crit, main, weak = (float(x) for x in thresholds)
        if not -1.0 <= crit < main < weak <= 1.0:
            raise ValueError(f"GCond thresholds must satisfy -1 <= crit < main < weak <= 1, got {thresholds}")
        self.th, self.p, self.tw, self.nb = (crit, main, weak), power, tie_weights, norm_beta
        self.max_iters, self.dominance, self.beta, self.eps = max_iters, dominance, momentum, eps
        self.prev: torch.Tensor | None = None  # resolved rows of the previous call [T, P]
        self.ema: torch.Tensor | None = None  # EMA of each task's gradient norm
        self.hist: list[int] = []
        self.m: torch.Tensor | None = None
        self.t = 0
        self.resolved = 0

    def _alpha(self, c: float) -> float:
        crit, main, weak = self.th
        if c < crit:
            return math.pi
        if c < main:
            return math.pi / 2 * (1 + ((c - main) / (crit - main)) ** self.p)
        return math.pi / 2 * (1 - min(max((c - main) / (weak - main), 0.0), 1.0))

    def _arbiter(self, i: int, j: int, stab: torch.Tensor, n: torch.Tensor) -> tuple[int, int]:
        """(winner, loser) of the pair (i, j); ties go to i (the lower index)."""
        h = self.hist[-self.dominance:] if self.dominance else []
        if len(h) == self.dominance > 0 and len(set(h)) == 1 and h[0] in (i, j):
            return (j, i) if h[0] == i else (i, j)
        r = [float(n[x] / (self.ema[x] + self.eps)) for x in (i, j)]
        score = [self.tw[0] * max(0.0, float(stab[x])) + self.tw[1] * r[k] / (r[0] + r[1] + self.eps)
                 for k, x in enumerate((i, j))]
        return (j, i) if score[1] > score[0] else (i, j)

    def combine(self, G, active, losses):
        T = G.shape[0]
        M = gramian(G)
        if self.ema is None or self.ema.shape[0] != T or (self.prev is not None and self.prev.shape != G.shape):
            self.ema, self.prev, self.hist = torch.ones(T, dtype=torch.float64), None, []
        n0 = torch.sqrt(M.diagonal().clamp_min(0.0))
        self.ema = torch.where(active, self.nb * self.ema + (1 - self.nb) * n0, self.ema)
        if self.prev is None:
            X, prev_norm = torch.zeros(T, T, dtype=torch.float64), torch.zeros(T, dtype=torch.float64)
        else:
            X, prev_norm = (G @ self.prev.T).double(), self.prev.double().norm(dim=1)  # X_kj = g_k . prev_j
        C = torch.eye(T, dtype=torch.float64)
        idx = torch.nonzero(active).flatten().tolist()
        tiny = self.eps * float(M.diagonal().max())  # relative: GCond must not depend on the gradients' scale
        self.resolved = 0
        for _ in range(self.max_iters):
            K = C @ M @ C.T  # Gramian of the current rows C G
            n = torch.sqrt(K.diagonal().clamp_min(0.0))
            best, pair = self.th[2] - 1e-6, None  # tolerance: projected-off pairs have cos ~ -1e-17
            for a, i in enumerate(idx):
                for j in idx[a + 1:]:
                    if K[i, i] <= tiny or K[j, j] <= tiny:
                        continue
                    c = float(K[i, j] / (n[i] * n[j]))
                    if c < best:
                        best, pair = c, (i, j)
            if pair is None:
                break
            denom = n * prev_norm
            stab = torch.where(denom > 0, (C @ X).diagonal() / denom.clamp_min(1e-300), torch.zeros_like(denom))  # S_i
            w, l_ = self._arbiter(*pair, stab, n)
            self.hist = (self.hist + [w])[-max(self.dominance, 1):]
            alpha = self._alpha(best)
            s_w, s_l = math.sin(alpha), math.sin(min(alpha, math.pi / 2))
            dot, cw, cl = K[w, l_], C[w].clone(), C[l_].clone()
            C[w] = cw - s_w * dot / K[l_, l_] * cl  # both norms > tiny: selected pairs only
            C[l_] = cl - s_l * dot / K[w, w] * cw
            self.resolved += 1
        R = C.to(G.dtype) @ G
        self.prev = R
        d = (active.to(G.dtype) @ R) / max(len(idx), 1)
        if self.beta > 0:
            self.t += 1
            self.m = d * (1 - self.beta) if self.m is None else self.m * self.beta + d * (1 - self.beta)
            d = self.m / (1 - self.beta**self.t)
        return d

    def stats(self):
        return {"surgery/resolved_pairs": self.resolved}

    def state_dict(self):
        return {"prev": self.prev, "ema": self.ema, "hist": list(self.hist), "m": self.m, "t": self.t}

    def load_state_dict(self, state):
        # checkpoints of the earlier (non-paper) GCond hold only "acc": start the paper's state afresh
        self.prev, self.ema, self.hist = state.get("prev"), state.get("ema"), list(state.get("hist", []))
        self.m, self.t = state.get("m"), state.get("t", 0)
