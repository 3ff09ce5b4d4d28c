"""Per-task reward normalisation: one scale per task, so that every task's values live on a
comparable scale (Meta-World's dense rewards differ ~10x between tasks, and the task with the
largest rewards then dominates a shared critic's loss and gradient).

Two modes, each keeping one running statistic per task, updated from the experience in the order
it was collected (per env slot, reset at every episode end, truncation included):

- ``running_std`` (the return-based reward scaling of SB3's ``VecNormalize`` and Engstrom et al.
  2020, "Implementation Matters in Deep Policy Gradients"): per slot the discounted running sum
  ``G <- gamma G + r``; per task the running variance of the G values its slots produced;
  ``r~ = clip(r / sqrt(Var_t[G] + eps), -10, 10)``.
- ``max_return`` (BRC, Nauman et al. 2025, arXiv 2505.23150): per slot the discounted return
  accumulated since the episode start ``R = sum_k gamma^k r_k``; per task the largest ``|R|``
  seen so far, ``M_t``; ``r~ = r * v_max / M_t`` so that the largest discounted return seen
  maps to ``v_max`` (BRC: 10, the edge of its categorical critic's support). Choice: BRC adds
  an entropy correction to R; it is left out here (SAC's entropy bonus is per task and small
  next to Meta-World's returns), and a task with no reward seen yet keeps scale 1.

Only the scale is learned; rewards are stored raw (the replay buffer keeps env rewards) and
scaled when a batch or rollout reaches the learner, always with the current scales. The
normaliser plugs into the trainer's reward seam (:mod:`mtrl.rewards`): ``update`` reads new
experience (kind ``"rollout"`` for MT-PPO, ``"collected"`` for MT-SAC's new transitions),
``relabel`` scales (``"rollout"``, ``"batch"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtrl.errors import MtrlError

MODES = ("none", "running_std", "max_return")


class RewardNormalizer:
    """Per-task reward scales; ``[T]`` arrays of statistics, ``[slots]`` arrays of per-slot sums.

    Args:
        mode: ``running_std`` or ``max_return``.
        num_tasks: T.
        num_slots: env slots over all runners (the slot ids in the experience index these).
        gamma: the learner's discount.
        v_max: ``max_return``: the value the largest discounted return maps to.
        eps: variance floor of ``running_std``.
        clip: ``running_std``: scaled rewards are clipped to [-clip, clip] (as SB3's VecNormalize
            does: on a sparse task the first success otherwise meets a variance near 0).
    """

    log_key = "reward_norm/scale"

    def __init__(self, mode: str, num_tasks: int, num_slots: int, gamma: float, v_max: float = 10.0,
                 eps: float = 1e-8, clip: float = 10.0):
        if mode not in MODES[1:]:
            raise MtrlError(f"unknown reward_norm {mode!r}; valid: {', '.join(repr(m) for m in MODES)}")
        if v_max <= 0:
            raise MtrlError(f"reward_norm_v_max must be positive, got {v_max}")
        self.mode, self.T, self.gamma, self.v_max, self.eps = mode, num_tasks, float(gamma), float(v_max), eps
        self.clip = float(clip)
        self.ret = np.zeros(num_slots)  # per slot: running G (running_std) or R since episode start (max_return)
        self.disc = np.ones(num_slots)  # per slot: gamma^k since the episode start (max_return)
        self.count = np.zeros(num_tasks)  # per task: Welford statistics of G (running_std)
        self.mean = np.zeros(num_tasks)
        self.m2 = np.zeros(num_tasks)
        self.max_abs = np.zeros(num_tasks)  # per task: largest |R| seen (max_return)

    # ------------------------------------------------------------------ statistics
    def _step(self, slots: np.ndarray, tasks: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        """One vector step: ``slots`` distinct, with their tasks, rewards and episode ends."""
        r = rewards.astype(np.float64)
        if self.mode == "running_std":
            g = self.ret[slots] = self.gamma * self.ret[slots] + r
            for t, x in zip(tasks, g):  # Welford, one value at a time (a few per step)
                self.count[t] += 1
                d = x - self.mean[t]
                self.mean[t] += d / self.count[t]
                self.m2[t] += d * (x - self.mean[t])
        else:
            self.ret[slots] += self.disc[slots] * r
            self.disc[slots] *= self.gamma
            np.maximum.at(self.max_abs, tasks, np.abs(self.ret[slots]))
        self.ret[slots[dones]] = 0.0
        self.disc[slots[dones]] = 1.0

    def observe_rollout(self, rollout: dict[str, Any]) -> None:
        """On-policy rollout ``[S, N]``: column j is global slot j."""
        S, N = rollout["rewards"].shape
        slots = np.arange(N)
        done = np.logical_or(rollout["terminated"], rollout["truncated"])
        for s in range(S):
            self._step(slots, rollout["task_ids"][s], rollout["rewards"][s], done[s])

    def observe_transitions(self, data: dict[str, Any]) -> None:
        """Flat off-policy transitions with ``slots`` and ``dones`` (runner-major, then step-major)."""
        slots, n = data["slots"], len(data["slots"])
        start = 0
        while start < n:  # cut into vector steps: a run of distinct, increasing slot ids
            end = start + 1
            while end < n and slots[end] > slots[end - 1]:
                end += 1
            sl = slice(start, end)
            self._step(slots[sl], data["task_ids"][sl], data["rewards"][sl], np.asarray(data["dones"][sl], bool))
            start = end

    def scales(self) -> np.ndarray:
        """``[T]``: the factor each task's rewards are multiplied by."""
        if self.mode == "running_std":
            var = np.where(self.count > 1, self.m2 / np.maximum(self.count - 1, 1), 1.0)
            return 1.0 / np.sqrt(var + self.eps)
        return np.where(self.max_abs > 0, self.v_max / np.maximum(self.max_abs, 1e-12), 1.0)

    # ------------------------------------------------------------------ the reward seam
    def update(self, data: dict[str, Any], kind: str) -> dict[str, Any]:
        if kind == "rollout":
            self.observe_rollout(data)
        elif kind == "collected":
            self.observe_transitions(data)
        return {}

    def relabel(self, data: dict[str, Any], kind: str) -> dict[str, Any]:
        if kind == "collected":
            return data  # stored raw; scaled when sampled
        scale = self.scales().astype(np.float32)
        r = data["rewards"] * scale[data["task_ids"]]
        if self.mode == "running_std":
            r = np.clip(r, -self.clip, self.clip)
        return {**data, "rewards": r.astype(np.float32)}

    def restart_episodes(self) -> None:
        """Forget the per-slot sums (episodes in progress restarted: no env state on resume)."""
        self.ret[:] = 0.0
        self.disc[:] = 1.0

    def reward_per_task(self, data: dict[str, Any]) -> np.ndarray:
        return self.scales()

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).copy() for k in ("ret", "disc", "count", "mean", "m2", "max_abs")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, np.asarray(v, np.float64).copy())
