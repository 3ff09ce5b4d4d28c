"""Behaviour cloning (Pomerleau 1991; the baseline of every imitation paper): maximise the
demonstrations' log-likelihood under the multi-task policy,

    L = - mean_{(s, a, t) in demos} log pi(a | s, t),

with MT-PPO's network (so ``mtrl eval`` / ``record`` / ``compare`` treat a BC run like any other)
and Adam. Each training iteration takes ``ppo.epochs x ppo.minibatches`` steps on minibatches
of ``len(demos) / ppo.minibatches`` expert transitions; the rollouts the trainer still collects
serve only to log the policy's true success and return (BC never learns from them).
Unlabelled demonstrations carry no task id, so BC then needs ``one_hot: false`` (one policy over
observations alone).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from mtrl.agents.ppo import MTPPO, PPOConfig
from mtrl.errors import MtrlError


class BC(MTPPO):
    """Behaviour cloning on MT-PPO's policy network (the value head is not trained)."""

    name = "bc"

    def __init__(self, cfg: PPOConfig, obs_dim: int, num_tasks: int, action_space, seed: int = 0,
                 surgery: str = "mean", surgery_args: dict | None = None, diagnostics_every: int = 0):
        if surgery != "mean":
            raise ValueError("algo=bc has one loss, so no gradient surgery; use surgery=mean")
        super().__init__(cfg, obs_dim, num_tasks, action_space, seed)
        self.data: dict[str, torch.Tensor] | None = None

    def set_demos(self, demos: Any, raw_dim: int, one_hot: bool) -> None:
        """Keep the demonstrations as tensors in the policy's observation layout."""
        obs = torch.as_tensor(demos.obs)
        if demos.labels:
            tids = torch.as_tensor(demos.task_ids)
        elif one_hot:
            raise MtrlError(f"BC from unlabelled demonstrations ({demos.path}) cannot feed the task id the policy "
                            "expects; set one_hot=false (one policy over observations) or use labelled demos")
        else:
            tids = torch.zeros(len(obs), dtype=torch.long)
        if one_hot:
            obs = torch.cat([obs, F.one_hot(tids, self.num_tasks).float()], 1)
        self.data = {"obs": obs, "tids": tids, "acts": torch.as_tensor(demos.actions)}

    def update(self, rollout: dict[str, np.ndarray], progress: float = 0.0) -> dict[str, Any]:
        if self.data is None:
            raise MtrlError("algo=bc needs demonstrations: pass demos=PATH (from `mtrl demos TASKSET`)")
        cfg, d = self.cfg, self.data
        n = d["obs"].shape[0]
        mb = max(n // cfg.minibatches, 1)
        losses, correct = [], []
        for _ in range(cfg.epochs * cfg.minibatches):
            idx = torch.randint(0, n, (mb,), generator=self.gen)
            dist = self.net.dist(d["obs"][idx], d["tids"][idx])
            logp, _ = self.net.log_prob_entropy(dist, d["acts"][idx])
            loss = -logp.mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.max_grad_norm)
            self.opt.step()
            losses.append(float(loss.detach()))
            if self.net.discrete:
                correct.append(float((dist.probs.argmax(-1) == d["acts"][idx]).float().mean()))
        self.updates += 1
        out: dict[str, Any] = {"loss/bc": float(np.mean(losses))}
        if correct:
            out["bc/accuracy"] = float(np.mean(correct))
        return out
