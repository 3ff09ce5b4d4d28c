"""MH-AIRL: multi-task hierarchical adversarial inverse RL (Chen, Tamboli, Lan & Aggarwal, ICML 2023).

The policy is the two-level option policy of an option env (``ppo.heads: options``, K options):
pi(z_t, a_t | s_t, z_{t-1}, c) = pi_H(z_t | s_t, z_{t-1}, c) pi_L(a_t | s_t, z_t, c), with c the
task context (the one-hot task id in the observation). The reward that replaces the env's is

    r_t = f(s_t, z_{t-1}, a_t, z_t, s_{t+1}) - log pi_H(z_t | .) - log pi_L(a_t | .)      (AIRL, H-AIRL eq. 10)
          + alpha_DI log q_w(z_t | s_{t+1}, z_{t-1}, c)                                   (directed information)
          + alpha_MI [t ends the episode] log q_psi(c | s_0, a_0, ..., s_t, a_t)          (mutual information)

with the discriminator D = exp f / (exp f + pi_H pi_L) over the extended state-action and
f = g(s, a, c)[z_{t-1}, z_t] + gamma h(s', c) - h(s, c) (one output of g per option pair, the
reference code's K (K + 1) discriminators as one network). Trained with the logistic loss
(expert = 1) and a gradient penalty at interpolates, as GAIL/AIRL here.

Expert demonstrations carry no options, and without labels no task either. Before every
``estep_every``-th discriminator update (an E-step, the reference code's ``convert_demo``):

1. each unlabelled demo's context is the argmax of the context posterior q_psi(c | tau) over the
   whole demo (labelled demos keep their task);
2. each demo's options are the Viterbi path under the current policy
   (:func:`mtrl.imitation.options.viterbi`), with z_{-1} = K (no previous option).

q_psi (a bidirectional LSTM, :class:`~mtrl.imitation.options.ContextPosterior`) and q_w are
trained on the policy's own rollouts, where context and options are known.

**Choices made here** (the paper body was not available; see docs/mhairl-notes.md for what its
precursor paper and code say):

1. The reward is the AIRL form (H-AIRL eq. 10), not the code's sigmoid(f) variant.
2. The context is the task (discrete), as in the code's Kitchen variant; both levels see it.
3. q_w is an MLP on (s_{t+1}, c, one-hot z_{t-1}) (a Markov version of the code's GRU over the
   history); q_psi sees the episode's part inside the current rollout (episodes may straddle
   rollouts), and its reward goes to the episode's last step, as in the code.
4. alpha_MI = 1e-3 and alpha_DI = 1e-4 (the code's values); demo contexts are the posterior's
   argmax (the code samples); h sees the state and context only (state-only shaping).
5. Time-limit truncation bootstraps V as everywhere in MT-PPO (the code bootstraps 0).
6. Behaviour cloning, off by default (the paper learns from scratch): ``bc_init: N`` fits both
   policy levels to the demos by Option-BC (hard EM: Viterbi options, then maximum likelihood;
   Jing et al., ICML 2021) for N steps before the first adversarial update, the hierarchical form
   of the BC pre-training of OpenAI baselines' GAIL (``--pretrained``); ``bc_steps: M`` keeps M
   such steps after every discriminator update, the BC term of "Augmenting GAIL with BC" (Jena,
   Liu & Sycara, CoRL 2020) as separate optimiser steps (the rollout keeps the log pi of the
   policy that collected it, so PPO's ratios stay the true importance weights and its clipping
   keeps the update near that policy). The warm start's own rollout came from
   the untrained policy, so its log pi is recomputed under the warm-started one (PPO's ratios
   start at 1). Unlabelled demos get their contexts from the posterior, fitted for 50 steps on
   that first rollout. Why it matters on MiniGrid: with the gradient penalty (weight 10, target
   norm 1) f changes by about 1.4 between two one-hot actions, so pi ~ exp(f) cannot be sharper
   than that and the policy's entropy climbs back from the BC start (BENCHMARKS.md).
7. Policy optimisation is PPO on the extended MDP: one ratio pi(z, a | s, z_prev) =
   pi_H pi_L and one critic V(s, z_prev) (the code's default also shares one critic; it takes
   two sequential clipped steps, high then low).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mtrl.errors import MtrlError
from mtrl.imitation.adversarial import _mlp, reward_per_task, with_rewards
from mtrl.imitation.demos import Demos
from mtrl.imitation.options import ContextPosterior, viterbi_batch


class OptionDiscriminator(nn.Module):
    """f(s, z_prev, a, z, s') = g(s, a)[z_prev, z] + gamma (1 - done) h(s') - h(s)."""

    def __init__(self, state_dim: int, act_dim: int, options: int, hidden: list[int], gamma: float):
        super().__init__()
        self.K, self.gamma = options, gamma
        self.g = _mlp(state_dim + act_dim, hidden, (options + 1) * options)
        self.h = _mlp(state_dim, hidden, 1)

    def f(self, s, a, s2, done, zp, z) -> torch.Tensor:
        g = self.g(torch.cat([s, a], -1)).gather(-1, (zp * self.K + z)[:, None]).squeeze(-1)
        return g + self.gamma * (1.0 - done) * self.h(s2).squeeze(-1) - self.h(s).squeeze(-1)


class MHAIRLReward:
    """The MH-AIRL reward model (the trainer's ``reward_model``) for an option policy."""

    def __init__(self, demos: Demos, num_tasks: int, raw_dim: int, action_space: gym.Space, options: int,
                 gamma: float = 0.99, hidden: list[int] | None = None, lr: float = 3e-4, grad_penalty: float = 10.0,
                 disc_updates: int = 4, disc_batch: int = 512, alpha_mi: float = 1e-3, alpha_di: float = 1e-4,
                 estep_every: int = 1, posterior_updates: int = 5, bc_init: int = 0, bc_estep: int = 100,
                 bc_steps: int = 0, bc_lr: float = 1e-3, bc_batch: int = 256, seed: int = 0,
                 policy_one_hot: bool = True):
        if not policy_one_hot:
            raise MtrlError("mhairl conditions the policy on the task context: keep one_hot=true")
        self.demos, self.T, self.raw_dim, self.K = demos, num_tasks, raw_dim, options
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.n_act = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        if not self.discrete:  # the env clips; the discriminator sees executed actions (as the experts')
            self.low = torch.as_tensor(action_space.low, dtype=torch.float32).reshape(-1)
            self.high = torch.as_tensor(action_space.high, dtype=torch.float32).reshape(-1)
        torch.manual_seed(seed + 999)
        hidden = list(hidden or [256, 256])
        self.disc = OptionDiscriminator(raw_dim + num_tasks, self.n_act, options, hidden, gamma)
        self.context_post = ContextPosterior(raw_dim + self.n_act, num_tasks)
        self.option_post = _mlp(raw_dim + num_tasks + options + 1, [64, 64], options)
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=lr)
        self.post_opt = torch.optim.Adam([*self.context_post.parameters(), *self.option_post.parameters()], lr=1e-3)
        self.grad_penalty, self.disc_updates, self.disc_batch = grad_penalty, disc_updates, disc_batch
        self.alpha_mi, self.alpha_di = alpha_mi, alpha_di
        self.estep_every, self.posterior_updates = max(int(estep_every), 1), int(posterior_updates)
        self.gen = torch.Generator().manual_seed(seed + 4321)
        from mtrl.imitation import _check_bc_args

        _check_bc_args({"bc_init": bc_init, "bc_steps": bc_steps, "bc_estep": bc_estep, "bc_batch": bc_batch,
                        "bc_lr": bc_lr})
        self.bc_init, self.bc_estep, self.bc_steps = bc_init, bc_estep, bc_steps
        self.bc_lr, self.bc_batch = float(bc_lr), bc_batch
        self._warm_logp: np.ndarray | None = None  # the warm start's rollout log pi, for its relabel
        self.agent: Any = None
        self.updates = 0
        self.e_raw = torch.as_tensor(demos.obs)
        self.e_next = torch.as_tensor(demos.next_obs)
        self.e_act = torch.as_tensor(demos.actions)
        self.e_done = torch.as_tensor(demos.terminated | demos.truncated).float()
        ep = np.asarray(demos.episode)
        starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])
        ends = np.r_[starts[1:], len(ep)]
        self.e_len = torch.as_tensor(ends - starts)
        self.e_pad = torch.full((len(starts), int(self.e_len.max())), -1, dtype=torch.long)  # demo rows, padded
        for i, (a, b) in enumerate(zip(starts, ends)):
            self.e_pad[i, :b - a] = torch.arange(a, b)
        self.e_owner = torch.repeat_interleave(torch.arange(len(starts)), self.e_len)  # each row's demo
        self.e_ctx: torch.Tensor | None = torch.as_tensor(demos.task_ids) if demos.labels else None
        self.e_z: torch.Tensor | None = None  # options from the last E-step

    def attach(self, agent: Any) -> None:
        if not hasattr(agent.policy, "high_logp"):
            raise MtrlError("mhairl needs the option policy: set ppo.heads=options (see agents/mhairl.yaml)")
        self.agent = agent
        net = agent.policy
        self.bc_opt = torch.optim.Adam([*net.high.parameters(), *net.low.parameters()]
                                       + ([] if net.discrete else [net.log_std]), lr=self.bc_lr)

    # ------------------------------------------------------------------ encodings
    def _act_enc(self, a: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return F.one_hot(a.long().reshape(-1), self.n_act).float()
        return a.float().reshape(a.shape[0], -1)

    def _state(self, raw: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return torch.cat([raw, F.one_hot(ctx.long(), self.T).float()], 1)

    def _policy_obs(self, raw: torch.Tensor, ctx: torch.Tensor, zp: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._state(raw, ctx), F.one_hot(zp.long(), self.K + 1).float()], 1)

    # ------------------------------------------------------------------ E-step on the demos
    @torch.no_grad()
    def e_step(self) -> None:
        """Contexts (unlabelled demos: the posterior's argmax per demo) and Viterbi options, for all
        demos at once (padded to the longest; :func:`~mtrl.imitation.options.viterbi_batch`)."""
        net = self.agent.policy
        valid = self.e_pad >= 0
        rows = self.e_pad.clamp_min(0)
        if not self.demos.labels:
            x = torch.cat([self.e_raw, self._act_enc(self.e_act)], 1)[rows]  # [E, L, D]
            per_demo = self.context_post(x, self.e_len).argmax(-1)  # [E]
            self.e_ctx = per_demo[self.e_owner]
        assert self.e_ctx is not None
        n = len(self.e_raw)
        log_high = torch.stack([net.high_logp(self._policy_obs(self.e_raw, self.e_ctx, torch.full((n,), zp)))
                                for zp in range(self.K + 1)], 1)  # [N, K+1, K]
        obs = self._policy_obs(self.e_raw, self.e_ctx, torch.full((n,), self.K))
        log_low = torch.stack([net.low_logp_entropy(obs, torch.full((n,), z), self._low_action(self.e_act))[0]
                               for z in range(self.K)], 1)  # [N, K]
        z_pad, _ = viterbi_batch(log_low[rows], log_high[rows], self.e_len)
        z = torch.empty(n, dtype=torch.long)
        z[self.e_pad[valid]] = z_pad[valid]
        self.e_z = z

    def _low_action(self, a: torch.Tensor) -> torch.Tensor:
        return a.long().reshape(-1) if self.discrete else a.float().reshape(a.shape[0], -1)

    def _expert_zp(self) -> torch.Tensor:
        assert self.e_z is not None
        zp = torch.full_like(self.e_z, self.K)  # z_{t-1}; K at each demo's first step
        same = self.e_owner[1:] == self.e_owner[:-1]
        zp[1:][same] = self.e_z[:-1][same]
        return zp

    @torch.no_grad()
    def _expert_batch(self, n: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, len(self.e_raw), (n,), generator=self.gen)
        ctx, z, zp = self.e_ctx[idx], self.e_z[idx], self._expert_zp()[idx]
        net = self.agent.policy
        obs = self._policy_obs(self.e_raw[idx], ctx, zp)
        logp = net.high_logp(obs).gather(1, z[:, None]).squeeze(1) + net.low_logp_entropy(
            obs, z, self._low_action(self.e_act[idx]))[0]
        return {"s": self._state(self.e_raw[idx], ctx), "a": self._act_enc(self.e_act[idx]),
                "s2": self._state(self.e_next[idx], ctx), "done": self.e_done[idx], "zp": zp, "z": z, "logp": logp}

    # ------------------------------------------------------------------ policy data
    def _policy_batch(self, r: dict[str, Any]) -> dict[str, torch.Tensor]:
        obs = torch.as_tensor(r["obs"])
        S, N, D = obs.shape
        nxt = torch.cat([obs[1:], torch.as_tensor(r["last_obs"])[None]], 0).reshape(S * N, D)
        flat = obs.reshape(S * N, D)
        acts = torch.as_tensor(r["actions"]).reshape(S * N, -1)
        ctx = torch.as_tensor(r["task_ids"]).reshape(-1)
        zp = flat[:, D - self.K - 1:].argmax(1)
        z = acts[:, 0].round().long()
        low_a = acts[:, 1] if self.discrete else torch.maximum(torch.minimum(acts[:, 1:], self.high), self.low)
        done = torch.as_tensor(r["terminated"] | r["truncated"]).reshape(-1).float()
        return {"s": self._state(flat[:, :self.raw_dim], ctx), "a": self._act_enc(low_a),
                "s2": self._state(nxt[:, :self.raw_dim], ctx), "done": done, "zp": zp, "z": z,
                "logp": torch.as_tensor(r["logp"]).reshape(-1), "ctx": ctx, "raw": flat[:, :self.raw_dim]}

    def _segments(self, r: dict[str, Any]) -> list[tuple[int, np.ndarray]]:
        """Episode pieces inside the rollout: (task, flat row indices) for every slot."""
        S, N = r["task_ids"].shape
        done = r["terminated"] | r["truncated"]
        out = []
        for n in range(N):
            start = 0
            for t in range(S):
                if done[t, n] or t == S - 1:
                    out.append((int(r["task_ids"][t, n]), np.arange(start, t + 1) * N + n))
                    start = t + 1
        return out

    def _context_logp(self, pol: dict[str, torch.Tensor], segs) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([pol["raw"], pol["a"]], 1)
        lengths = torch.tensor([len(rows) for _, rows in segs])
        batch = nn.utils.rnn.pad_sequence([x[torch.as_tensor(rows)] for _, rows in segs], batch_first=True)
        return self.context_post(batch, lengths), torch.tensor([c for c, _ in segs])

    def _option_logp(self, pol: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q_w(z_t | s_{t+1}, c, z_{t-1}); 0 at an episode's last step, whose s_{t+1} in the
        rollout is already the next episode's first observation (the code also skips it)."""
        x = torch.cat([pol["s2"], F.one_hot(pol["zp"], self.K + 1).float()], 1)
        lp = torch.log_softmax(self.option_post(x), -1).gather(1, pol["z"][:, None]).squeeze(1)
        return lp * (1.0 - pol["done"])

    # ------------------------------------------------------------------ behaviour cloning
    def _bc_steps(self, steps: int, estep_every: int | None) -> dict[str, float]:
        """``steps`` Adam steps of hierarchical behaviour cloning (Option-BC, Jing et al., "Adversarial
        Option-Aware Hierarchical Imitation Learning", ICML 2021) by hard EM: every ``estep_every``
        steps an E-step (contexts and Viterbi options under the current policy; ``None``: keep the
        last E-step's), then steps on the
        demos' negative complete-data log-likelihood

            L_BC = - mean_t [log pi_H(z_t | s_t, z_{t-1}, c) + log pi_L(a_t | s_t, z_t, c)].

        Only the two policy levels are fitted (not the critic), with their own Adam (``bc_lr``)."""
        net = self.agent.policy
        n = len(self.e_raw)
        nll = acc = float("nan")
        zp_all = self._expert_zp() if self.e_z is not None else None
        for i in range(steps):
            if zp_all is None or (estep_every is not None and i % estep_every == 0):
                self.e_step()
                zp_all = self._expert_zp()
            assert self.e_z is not None and self.e_ctx is not None and zp_all is not None
            idx = torch.randint(0, n, (min(self.bc_batch, n),), generator=self.gen)
            z = self.e_z[idx]
            obs = self._policy_obs(self.e_raw[idx], self.e_ctx[idx], zp_all[idx])
            lp_low, _ = net.low_logp_entropy(obs, z, self._low_action(self.e_act[idx]))
            loss = -(net.high_logp(obs).gather(1, z[:, None]).squeeze(1) + lp_low).mean()
            self.bc_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.bc_opt.step()
            nll = float(loss.detach())
            if net.discrete:
                acc = float((net.low_out(obs, z).argmax(-1) == self.e_act[idx].long().reshape(-1)).float().mean())
        return {"bc_nll": nll, "bc_accuracy": acc} if net.discrete else {"bc_nll": nll}

    # ------------------------------------------------------------------ the seam
    def update(self, rollout: dict[str, Any], kind: str = "rollout") -> dict[str, Any]:
        if kind != "rollout":
            raise MtrlError("mhairl is implemented for on-policy rollouts (algo=mtppo, ppo.heads=options)")
        pol = self._policy_batch(rollout)
        segs = self._segments(rollout)
        warm = self.bc_init > 0 and self.updates == 0
        # a warm start assigns unlabelled demos' contexts from the posterior: fit it longer first (also with
        # labels, where the posterior only gives the mutual-information reward)
        for _ in range(max(self.posterior_updates, 50) if warm else self.posterior_updates):
            lp_c, ctx = self._context_logp(pol, segs)
            keep = 1.0 - pol["done"]
            loss = F.nll_loss(lp_c, ctx) - self._option_logp(pol).sum() / keep.sum().clamp_min(1.0)
            self.post_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.post_opt.step()
        stats: dict[str, Any] = {"loss": 0.0, "acc_expert": 0.0, "acc_policy": 0.0}
        if warm:  # the warm start (see the module docstring, "Behaviour cloning")
            stats.update({f"{k}_init": v for k, v in self._bc_steps(self.bc_init, self.bc_estep).items()})
            rollout = self._with_current_logp(rollout)
            self._warm_logp = rollout["logp"]
            pol = self._policy_batch(rollout)
        if self.e_z is None or self.updates % self.estep_every == 0 or warm:
            self.e_step()
        n = pol["s"].shape[0]
        for _ in range(self.disc_updates):
            idx = torch.randint(0, n, (min(self.disc_batch, n),), generator=self.gen)
            p = {k: v[idx] for k, v in pol.items()}
            e = self._expert_batch(len(idx))
            lp = self.disc.f(p["s"], p["a"], p["s2"], p["done"], p["zp"], p["z"]) - p["logp"]
            le = self.disc.f(e["s"], e["a"], e["s2"], e["done"], e["zp"], e["z"]) - e["logp"]
            loss = F.softplus(-le).mean() + F.softplus(lp).mean()
            eps = torch.rand(len(idx), 1, generator=self.gen)
            x = {k: (eps * e[k] + (1 - eps) * p[k]).requires_grad_(True) for k in ("s", "a", "s2")}
            f = self.disc.f(x["s"], x["a"], x["s2"], p["done"], p["zp"], p["z"])
            grads = torch.autograd.grad(f.sum(), list(x.values()), create_graph=True)
            gp = ((torch.cat([g.reshape(len(idx), -1) for g in grads], 1).norm(dim=1) - 1) ** 2).mean()
            self.opt.zero_grad(set_to_none=True)
            (loss + self.grad_penalty * gp).backward()
            self.opt.step()
            stats["loss"] += float(loss.detach()) / self.disc_updates
            stats["acc_expert"] += float((le > 0).float().mean()) / self.disc_updates
            stats["acc_policy"] += float((lp < 0).float().mean()) / self.disc_updates
        if self.bc_steps > 0 and not warm:  # BC kept beside the adversarial reward (Jena et al.)
            stats.update(self._bc_steps(self.bc_steps, None))
        self.updates += 1
        with torch.no_grad():
            lp_c, ctx = self._context_logp(pol, segs)
            stats["context_accuracy"] = float((lp_c.argmax(1) == ctx).float().mean())
        usage = np.zeros((self.T, self.K))
        np.add.at(usage, (pol["ctx"].numpy(), pol["z"].numpy()), 1)
        stats["options"] = usage / np.maximum(usage.sum(1, keepdims=True), 1)  # option usage per task (image)
        return {f"imitation/{k}": v for k, v in stats.items()}

    @torch.no_grad()
    def _with_current_logp(self, rollout: dict[str, Any]) -> dict[str, Any]:
        """The rollout with ``logp`` under the current policy (used once, after the warm start
        changed the policy that collected it: PPO's ratios and the AIRL term then start from the
        warm-started policy instead of comparing it with the random one)."""
        obs = torch.as_tensor(rollout["obs"])
        S, N, D = obs.shape
        acts = torch.as_tensor(rollout["actions"]).reshape(S * N, -1)
        tids = torch.as_tensor(rollout["task_ids"]).reshape(-1)
        logp = self.agent.policy(obs.reshape(S * N, D), tids, acts)[0]
        return {**rollout, "logp": logp.reshape(rollout["logp"].shape).numpy().astype(rollout["logp"].dtype)}

    @torch.no_grad()
    def relabel(self, rollout: dict[str, Any], kind: str = "rollout") -> dict[str, Any]:
        if self._warm_logp is not None:  # computed in update(), same rollout and policy
            rollout, self._warm_logp = {**rollout, "logp": self._warm_logp}, None
        pol = self._policy_batch(rollout)
        reward = self.disc.f(pol["s"], pol["a"], pol["s2"], pol["done"], pol["zp"], pol["z"]) - pol["logp"]
        reward = reward + self.alpha_di * self._option_logp(pol)
        segs = self._segments(rollout)
        lp_c, ctx = self._context_logp(pol, segs)
        done = pol["done"].bool()
        for (c, rows), lp in zip(segs, lp_c):
            if done[rows[-1]]:
                reward[rows[-1]] += self.alpha_mi * lp[c]
        return with_rewards(rollout, reward)

    def reward_per_task(self, rollout: dict[str, Any]) -> np.ndarray:
        return reward_per_task(rollout, self.T)

    def state_dict(self) -> dict[str, Any]:
        return {"disc": self.disc.state_dict(), "opt": self.opt.state_dict(),
                "context_post": self.context_post.state_dict(), "option_post": self.option_post.state_dict(),
                "post_opt": self.post_opt.state_dict(), "bc_opt": self.bc_opt.state_dict(),
                "gen": self.gen.get_state(), "updates": self.updates,
                "e_z": self.e_z, "e_ctx": self.e_ctx}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.disc.load_state_dict(state["disc"])
        self.opt.load_state_dict(state["opt"])
        self.context_post.load_state_dict(state["context_post"])
        self.option_post.load_state_dict(state["option_post"])
        self.post_opt.load_state_dict(state["post_opt"])
        if "bc_opt" in state:  # runs from before the behaviour-cloning options have none
            self.bc_opt.load_state_dict(state["bc_opt"])
        self.gen.set_state(state["gen"])
        self.updates, self.e_z, self.e_ctx = state["updates"], state["e_z"], state["e_ctx"]
