"""Adversarial imitation reward models: GAIL and AIRL for MT-PPO, GAIL for MT-SAC.

Both train a discriminator to tell expert transitions (from a :mod:`mtrl.imitation.demos`
dataset) from the policy's, and replace the rollout's environment reward with a reward from
it before the learner sees the rollout (the reward seam, :mod:`mtrl.rewards`). The true
return and success stay in the episode statistics, never in the learner's reward.

- **GAIL** (Ho & Ermon, NeurIPS 2016): D(s, a) = sigmoid(d(s, a)); the policy's reward
  (``reward``) is ``logit``: r = log D - log(1 - D) = d(s, a) (default), ``positive``:
  r = -log(1 - D) = softplus(d), or ``negative``: r = log D = -softplus(-d). The positive form
  is a survival bonus and the negative one a time penalty (Kostrikov et al. 2019, "Discriminator-
  Actor-Critic"); where success ends the episode (MiniGrid) the positive form taught MT-PPO to
  avoid the goal (MT3: 0.07 success after 60k steps vs AIRL 0.77), so the unbiased logit is the
  default.
- **AIRL** (Fu, Luo & Levine, ICLR 2018): f(s, a, s') = g(s, a) + gamma h(s') - h(s) and

      D(s, a, s') = exp f / (exp f + pi(a|s)),   logit D = f - log pi(a|s),
      r = log D - log(1 - D) = f(s, a, s') - log pi(a|s).

  At the discriminator's optimum exp f = pi_E, so f recovers the expert's log-policy (its
  advantage) and g a disentangled reward (tested on a bandit in ``tests/test_imitation.py``).

Both are trained with the logistic loss (expert = 1), Adam, and a gradient penalty
``grad_penalty * (||grad_x logit||_2 - 1)^2`` at points interpolated between expert and policy
inputs (Gulrajani et al. 2017; the MH-AIRL code uses weight 10). Each iteration the
discriminator takes ``disc_updates`` minibatch steps of ``disc_batch`` policy transitions
(this rollout) against as many expert transitions (drawn uniformly from the demos).

**Multi-task and labels.** With task labels, the discriminator's input includes the one-hot
task id (expert data: from the labels; policy data: from the observation), i.e. one
discriminator conditioned on the task. Without labels it sees only the task's observation,
and AIRL's pi(a|s) is the policy's task mixture, log (1/T) sum_t pi(a | s, t), for expert and
policy samples alike (the unlabelled expert's task is unknown; MH-AIRL infers it instead).

**Off-policy (MT-SAC), GAIL only**: as in Discriminator-Actor-Critic (Kostrikov et al., ICLR
2019), the discriminator learns from each collection round's transitions against the demos (its
policy side drawn from a FIFO of the last ``policy_buffer`` collected transitions, a window of
recent policies rather than only the newest round), and every replay batch is relabelled with
the *current* discriminator when it is sampled, so old transitions never keep a stale reward.
Meta-World episodes end only at the time limit, so DAC's absorbing-state wrapper is not needed
(it is for tasks whose termination would bias a survival or time-penalty reward). AIRL needs
log pi(a|s) of executed, clipped actions, which the tanh-squashed SAC policy gives only inside
(-1, 1): it stays MT-PPO only.

**Choices made here.** Actions enter as one-hot vectors (discrete) or, for continuous tasks, as
the env executes them (clipped to the action bounds, like the experts');
g and h are MLPs (``hidden``, ReLU); at the last step of an episode (terminated or truncated)
AIRL drops gamma h(s') on both expert and policy transitions (the rollout does not keep the
final observation of a finished episode, so the two are treated alike); the rollout's last
step takes s' from the runner's next observation.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mtrl.errors import MtrlError
from mtrl.imitation.demos import Demos


def _mlp(in_dim: int, hidden: list[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def with_rewards(rollout: dict[str, Any], reward: torch.Tensor) -> dict[str, Any]:
    """The rollout with ``rewards`` replaced (``env_rewards`` keeps the environment's, for logs)."""
    out = dict(rollout)
    out["env_rewards"] = rollout["rewards"]
    out["rewards"] = reward.reshape(rollout["rewards"].shape).numpy().astype(np.float32)
    return out


def reward_per_task(rollout: dict[str, Any], num_tasks: int) -> np.ndarray:
    """Mean relabelled reward per task of a rollout (for TensorBoard; NaN for absent tasks)."""
    t = rollout["task_ids"].ravel()
    s = np.bincount(t, weights=rollout["rewards"].ravel(), minlength=num_tasks)
    n = np.bincount(t, minlength=num_tasks)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


class Discriminator(nn.Module):
    """``logit(s, a, s', done, log pi)``: GAIL's d(s, a), or AIRL's f(s, a, s') - log pi(a|s)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], kind: str, gamma: float):
        super().__init__()
        self.kind, self.gamma = kind, gamma
        self.g = _mlp(obs_dim + act_dim, hidden, 1)
        self.h = _mlp(obs_dim, hidden, 1) if kind == "airl" else None

    def f(self, s: torch.Tensor, a: torch.Tensor, s2: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        g = self.g(torch.cat([s, a], -1)).squeeze(-1)
        if self.h is None:
            return g
        return g + self.gamma * (1.0 - done) * self.h(s2).squeeze(-1) - self.h(s).squeeze(-1)

    def logit(self, s, a, s2, done, logp) -> torch.Tensor:
        f = self.f(s, a, s2, done)
        return f if self.h is None else f - logp


class AdversarialReward:
    """GAIL or AIRL reward model (the trainer's ``reward_model``) for MT-PPO."""

    def __init__(self, kind: str, demos: Demos, num_tasks: int, raw_dim: int, action_space: gym.Space,
                 gamma: float = 0.99, hidden: list[int] | None = None, lr: float = 3e-4, grad_penalty: float = 10.0,
                 disc_updates: int = 4, disc_batch: int = 512, use_labels: bool | None = None, seed: int = 0,
                 policy_one_hot: bool = True, reward: str = "logit", off_policy: bool = False,
                 policy_buffer: int = 50_000):
        if kind not in ("gail", "airl"):
            raise MtrlError(f"unknown adversarial imitation {kind!r}; valid: 'gail', 'airl'")
        if off_policy and kind != "gail":
            raise MtrlError("with algo=mtsac only imitation=gail is implemented (AIRL's log pi of clipped actions is "
                            "undefined for a tanh policy at the bounds); use algo=mtppo for airl")
        if policy_buffer < 1:
            raise MtrlError(f"imitation_args.policy_buffer must be >= 1, got {policy_buffer}")
        self.off_policy, self.policy_buffer = off_policy, int(policy_buffer)
        self._fifo: dict[str, torch.Tensor] | None = None  # off-policy: recent policy transitions
        self.kind, self.demos, self.T, self.raw_dim = kind, demos, num_tasks, raw_dim
        self.policy_one_hot = policy_one_hot  # the policy's observation ends with the one-hot task id
        if reward not in ("logit", "positive", "negative"):
            raise MtrlError(f"imitation_args.reward must be 'logit', 'positive' or 'negative', got {reward!r}")
        if kind == "airl" and reward != "logit":
            raise MtrlError("AIRL's reward is its logit f - log pi (imitation_args.reward applies to GAIL)")
        self.reward = reward
        self.labels = demos.labels if use_labels is None else bool(use_labels)
        if self.labels and not demos.labels:
            raise MtrlError(f"use_labels=true needs labelled demonstrations; {demos.path} has none")
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.n_act = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.low = None if self.discrete else torch.as_tensor(action_space.low, dtype=torch.float32).reshape(-1)
        self.high = None if self.discrete else torch.as_tensor(action_space.high, dtype=torch.float32).reshape(-1)
        self._cache: tuple[np.ndarray, dict[str, torch.Tensor]] | None = None
        in_dim = raw_dim + (num_tasks if self.labels else 0)
        torch.manual_seed(seed + 999)
        self.disc = Discriminator(in_dim, self.n_act, list(hidden or [256, 256]), kind, gamma)
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=lr)
        self.grad_penalty, self.disc_updates, self.disc_batch = grad_penalty, disc_updates, disc_batch
        self.gen = torch.Generator().manual_seed(seed + 4321)
        self.agent: Any = None
        e_obs = torch.as_tensor(demos.obs)
        e_next = torch.as_tensor(demos.next_obs)
        if self.labels:
            onehot = F.one_hot(torch.as_tensor(demos.task_ids), num_tasks).float()  # labels, not observations
            e_obs, e_next = torch.cat([e_obs, onehot], 1), torch.cat([e_next, onehot], 1)
        self.expert = {"obs": e_obs, "next_obs": e_next, "act": self._encode(torch.as_tensor(demos.actions)),
                       "raw_act": torch.as_tensor(demos.actions),
                       "done": torch.as_tensor(demos.terminated | demos.truncated).float(),
                       "tids": torch.as_tensor(demos.task_ids) if demos.labels else None}
        self.updates = 0

    # ------------------------------------------------------------------ plumbing
    def attach(self, agent: Any) -> None:
        """AIRL needs the current policy's log pi(a|s) on expert data."""
        self.agent = agent

    def _encode(self, actions: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return F.one_hot(actions.long().reshape(-1), self.n_act).float()
        return actions.float().reshape(actions.shape[0], -1)

    def _disc_obs(self, obs_full: torch.Tensor, tids: torch.Tensor) -> torch.Tensor:
        """Policy observations as the discriminator sees them: the task observation, plus the
        one-hot task id (from the rollout's task ids, whatever ``one_hot`` is) with labels."""
        raw = obs_full[:, :self.raw_dim]
        return torch.cat([raw, F.one_hot(tids, self.T).float()], 1) if self.labels else raw

    def _clip(self, acts: torch.Tensor) -> torch.Tensor:
        """Continuous actions as the env executed them (the Gaussian sample is clipped by the env;
        experts' actions are in bounds), so out-of-range values cannot give the policy away."""
        if self.low is None:
            return acts
        return torch.maximum(torch.minimum(acts.float(), self.high), self.low)

    @torch.no_grad()
    def _policy_logp(self, obs_raw: torch.Tensor, actions: torch.Tensor, tids: torch.Tensor | None) -> torch.Tensor:
        """log pi(a|s) of the current policy: at the given task, or the task mixture when unknown."""
        net = self.agent.policy

        def obs_of(t: torch.Tensor) -> torch.Tensor:
            return torch.cat([obs_raw, F.one_hot(t, self.T).float()], 1) if self.policy_one_hot else obs_raw

        if tids is not None:
            return net(obs_of(tids), tids, actions)[0]
        per_task = []
        for t in range(self.T):
            tt = torch.full((obs_raw.shape[0],), t, dtype=torch.long)
            per_task.append(net(obs_of(tt), tt, actions)[0])
        return torch.logsumexp(torch.stack(per_task), 0) - np.log(self.T)

    def _policy_batch(self, r: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Flatten a ``[S, N]`` rollout into discriminator inputs (next obs: the following step's)."""
        obs = torch.as_tensor(r["obs"])
        S, N = obs.shape[:2]
        nxt = torch.cat([obs[1:], torch.as_tensor(r["last_obs"])[None]], 0)
        done = torch.as_tensor(r["terminated"] | r["truncated"]).float()
        tids = torch.as_tensor(r["task_ids"]).reshape(-1)
        acts = torch.as_tensor(r["actions"]).reshape(S * N, *r["actions"].shape[2:])
        full = obs.reshape(S * N, -1)
        if self._cache is not None and self._cache[0] is r["obs"]:  # update() then relabel(): same rollout
            return self._cache[1]
        logp = torch.as_tensor(r["logp"]).reshape(-1)
        if self.kind == "airl":  # the current policy's log pi, as on the expert side (the rollout's is the
            # behaviour policy's: one update older with ppo.async_rollouts or after a warm start)
            logp = self._policy_logp(full[:, :self.raw_dim], acts, tids if self.labels else None)
        batch = {"obs": self._disc_obs(full, tids), "next_obs": self._disc_obs(nxt.reshape(S * N, -1), tids),
                 "act": self._encode(self._clip(acts)), "done": done.reshape(-1), "logp": logp, "tids": tids}
        self._cache = (r["obs"], batch)  # holds the array itself: an id() could be reused by the next rollout
        return batch

    def _expert_batch(self, n: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, self.expert["obs"].shape[0], (n,), generator=self.gen)
        b = {k: v[idx] for k, v in self.expert.items() if v is not None}
        if self.kind == "airl":
            raw = b["obs"][:, :self.raw_dim]
            b["logp"] = self._policy_logp(raw, b["raw_act"], b.get("tids") if self.labels else None)
        else:
            b["logp"] = torch.zeros(n)
        return b

    def _transitions(self, data: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Discriminator inputs of flat transitions (MT-SAC's collected rounds and replay batches)."""
        tids = torch.as_tensor(data["task_ids"]).long().reshape(-1)
        acts = torch.as_tensor(data["actions"]).reshape(tids.shape[0], -1)
        return {"obs": self._disc_obs(torch.as_tensor(data["obs"]), tids),
                "next_obs": self._disc_obs(torch.as_tensor(data["next_obs"]), tids),
                "act": self._encode(self._clip(acts)), "done": torch.as_tensor(data["terminated"]).float().reshape(-1),
                "logp": torch.zeros(tids.shape[0]), "tids": tids}

    def _remember(self, pol: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Append to the FIFO of recent policy transitions (off-policy) and return it."""
        if self._fifo is None:
            self._fifo = pol
        else:
            self._fifo = {k: torch.cat([self._fifo[k], v])[-self.policy_buffer:] for k, v in pol.items()}
        return self._fifo

    # ------------------------------------------------------------------ the seam
    def update(self, rollout: dict[str, Any], kind: str = "rollout") -> dict[str, Any]:
        """``disc_updates`` discriminator steps on this rollout (off-policy: on the recent policy
        transitions, after each collection round; replay batches train nothing) against the demos."""
        if kind == "rollout" and self.off_policy or kind != "rollout" and not self.off_policy:
            raise MtrlError(f"this {self.kind} reward model was built for "
                            f"{'MT-SAC' if self.off_policy else 'MT-PPO'} but got {kind!r} data")
        if kind == "batch":
            return {}
        pol = self._remember(self._transitions(rollout)) if kind == "collected" else self._policy_batch(rollout)
        n = pol["obs"].shape[0]
        stats = {"loss": 0.0, "acc_expert": 0.0, "acc_policy": 0.0, "grad_penalty": 0.0}
        for _ in range(self.disc_updates):
            idx = torch.randint(0, n, (min(self.disc_batch, n),), generator=self.gen)
            p = {k: v[idx] for k, v in pol.items()}
            e = self._expert_batch(len(idx))
            lp = self.disc.logit(p["obs"], p["act"], p["next_obs"], p["done"], p["logp"])
            le = self.disc.logit(e["obs"], e["act"], e["next_obs"], e["done"], e["logp"])
            loss = F.softplus(-le).mean() + F.softplus(lp).mean()  # BCE with expert = 1, policy = 0
            gp = self._gradient_penalty(e, p) if self.grad_penalty > 0 else torch.zeros(())
            self.opt.zero_grad(set_to_none=True)
            (loss + self.grad_penalty * gp).backward()
            self.opt.step()
            stats["loss"] += float(loss.detach()) / self.disc_updates
            stats["grad_penalty"] += float(gp.detach()) / self.disc_updates
            stats["acc_expert"] += float((le > 0).float().mean()) / self.disc_updates
            stats["acc_policy"] += float((lp < 0).float().mean()) / self.disc_updates
        self.updates += 1
        return {f"imitation/{k}": v for k, v in stats.items()}

    def _gradient_penalty(self, e: dict[str, torch.Tensor], p: dict[str, torch.Tensor]) -> torch.Tensor:
        eps = torch.rand(e["obs"].shape[0], 1, generator=self.gen)
        keys = ("obs", "act", "next_obs") if self.kind == "airl" else ("obs", "act")
        x = {k: (eps * e[k] + (1 - eps) * p[k]).requires_grad_(True) for k in keys}
        f = self.disc.f(x["obs"], x["act"], x.get("next_obs", p["next_obs"]), p["done"])
        grads = torch.autograd.grad(f.sum(), list(x.values()), create_graph=True)
        norm = torch.cat([g.reshape(g.shape[0], -1) for g in grads], 1).norm(dim=1)
        return ((norm - 1.0) ** 2).mean()

    @torch.no_grad()
    def relabel(self, rollout: dict[str, Any], kind: str = "rollout") -> dict[str, Any]:
        """Replace ``rewards`` with the discriminator's reward (see the module docstring)."""
        pol = self._policy_batch(rollout) if kind == "rollout" else self._transitions(rollout)
        logit = self.disc.logit(pol["obs"], pol["act"], pol["next_obs"], pol["done"], pol["logp"])
        reward = {"logit": logit, "positive": F.softplus(logit), "negative": -F.softplus(-logit)}[self.reward]
        return with_rewards(rollout, reward)

    def reward_per_task(self, rollout: dict[str, Any]) -> np.ndarray:
        return reward_per_task(rollout, self.T)

    def state_dict(self) -> dict[str, Any]:
        return {"disc": self.disc.state_dict(), "opt": self.opt.state_dict(), "gen": self.gen.get_state(),
                "updates": self.updates, "fifo": self._fifo}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.disc.load_state_dict(state["disc"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        self.updates = state["updates"]
        self._fifo = state.get("fifo")
