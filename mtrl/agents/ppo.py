"""MT-PPO: PPO (Schulman et al. 2017) on a multi-task batch, with losses kept per task.

Clipped surrogate, per sample i with ratio r_i = pi(a_i|s_i) / pi_old(a_i|s_i):

    l_i = -min(r_i A_i, clip(r_i, 1-eps, 1+eps) A_i) + c_v (V(s_i) - R_i)^2 / 2 - c_e H[pi(.|s_i)]

and the task losses are ``L_t = mean_{i in task t} l_i`` (a ``[T]`` vector), combined by their
mean, or, with ``surgery: NAME``, by that aggregator over the per-task gradients
(:mod:`mtrl.surgery`). Advantages are GAE(gamma, lambda) per env
slot (Schulman et al. 2016), bootstrapping through time-limit truncations with V(final obs);
they are normalised over the minibatch (``adv_norm: batch``), within each task
(``adv_norm: task``) or not at all (``none``).

Optional adaptive KL penalty (Schulman et al. 2017, section 4, as RLlib's PPO applies it on top
of the clip): with ``kl_coeff: beta_0 > 0`` each sample's loss gains ``beta * k3_i``, where
``k3_i = (r_i - 1) - log r_i`` (Schulman's unbiased, non-negative estimator of
KL(pi_old || pi) from the sampled action; RLlib uses the analytic KL of the two distributions,
which needs the old distribution's parameters that mtrl's rollouts do not keep), and after every
update ``beta`` is multiplied by 1.5 where the KL measured on the update's last minibatch
exceeded ``2 * kl_target`` and by 0.5 where it fell below ``kl_target / 2`` (RLlib's rule and
statistic; the paper uses 2 and 1/2 at 1.5 x target). ``kl_coeff: 0`` (default) is plain clipped
PPO. On resume the checkpointed ``beta`` continues unless the run's ``ppo.kl_coeff`` is 0 (the
penalty is turned off) or the checkpoint's is (it is turned on at the configured value).

Optional decoupled objective (Hilton, Cobbe & Schulman 2021, "Batch size-invariance for policy
optimization", arXiv 2110.00641, eq. 2), for rollouts sampled by an older policy than the one
being updated (``async_rollouts``: the behaviour policy is one update stale). With
``decoupled: true`` the clip is taken around the *proximal* policy pi_prox, the learner's policy
before this update (log-probabilities from one extra forward pass over the rollout), and the
behaviour policy enters only through the importance weight w_i = pi_prox(a_i|s_i) / pi_beh(a_i|s_i):

    r_i = pi(a_i|s_i) / pi_prox(a_i|s_i),   l^pg_i = -w_i min(r_i A_i, clip(r_i, 1-eps, 1+eps) A_i)

and the KL penalty, when on, is w_i k3_i with k3 against pi_prox, so the KL it measures and
steers is this update's step, not the step plus the staleness (the logged ``ppo/approx_kl``, and
the adaptive weight's statistic, stay the plain mean of k3 against pi_prox). w is a constant (no
gradient) capped at ``IS_MAX`` = 100, as the authors' code (openai/ppo-ewma, ``imp_samp_max``)
caps it for numerical stability; at a staleness of one update it stays near 1 (measured on
MiniGrid: mean ~1.0, max ~1.2). The value and entropy terms are unchanged.
With synchronous sampling pi_prox = pi_beh and w = 1 (up to float rounding between the runner's
and the learner's forward passes), i.e. plain PPO at the cost of one forward pass.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from mtrl.agents import optim
from mtrl.agents.losses import mean_of_present, per_task_mean
from mtrl.agents.networks import ActorCritic, OptionActorCritic
from mtrl.surgery import get as get_surgery
from mtrl.surgery.apply import SurgeryStep
from mtrl.surgery.jacobian import group_by_task


@dataclass
class PPOConfig:
    """MT-PPO hyper-parameters (units: steps are per env slot unless stated)."""

    lr: float = 3e-4
    num_steps: int = 128  # rollout length per env slot
    epochs: int = 4
    minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    heads: str = "single"  # single | multi | ensemble (one network per task) | options (two-level option policy)
    arch: str = "mlp"  # actor and critic trunks: mtrl.agents.archs (mlp, multihead, film, softmod, care, ...)
    arch_args: dict[str, Any] = field(default_factory=dict)  # the architecture's options (e.g. experts: 4)
    encoder: str = "flat"  # flat | cnn (set by the top-level ``obs: image``: MiniGrid's view through a CNN)
    options: int = 4  # K options of heads=options (the env then takes (option, action) rows)
    adv_norm: str = "batch"  # batch | task | none
    kl_coeff: float = 0.0  # initial weight of the adaptive KL penalty (0: none; RLlib's default is 0.2)
    kl_target: float = 0.01  # the mean KL per update the penalty's weight steers toward
    anneal_lr: bool = False
    # Ray runners sample the next rollout while the learner updates on this one (behaviour policy
    # one update stale; PPO's ratio to the stored behaviour log-probs is the importance weight)
    async_rollouts: bool = False
    # clip around the learner's pre-update policy; pi_prox / pi_behaviour as a per-sample weight
    # (Hilton et al. 2021: the correction one-update-stale rollouts call for; see the docstring)
    decoupled: bool = False


IS_MAX = 100.0  # cap on the decoupled objective's importance weight pi_prox / pi_behaviour


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A rollout array as a tensor; Ray hands back read-only arrays (zero-copy from its object
    store), which torch would wrap with a warning: those are copied."""
    return torch.as_tensor(a if a.flags.writeable else a.copy())


def _ppo_per_sample(logp, ent, v, old_logp, adv, ret, cfg: PPOConfig, kl_coeff: float = 0.0, weight=None):
    """PPO's per-sample loss, its parts and the probability ratio ``(l, pg, vl, ratio)``
    (``kl_coeff``: the current weight of the KL penalty, see the module docstring; ``weight``:
    the decoupled objective's importance weight pi_prox / pi_behaviour, with ``old_logp`` then
    log pi_prox).

    The log-ratio is clamped to [-20, 20] before ``exp``: a rollout far from the current policy
    (a behaviour-cloning warm start just moved it, a narrow Gaussian) would otherwise overflow the
    ratio to inf and its gradient to NaN; beyond e^20 the clipped objective is flat anyway in all
    but the unclipped branch, whose push is then capped."""
    ratio = (logp - old_logp).clamp(-20.0, 20.0).exp()
    pg = -torch.min(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv)
    if weight is not None:
        pg = weight * pg
    vl = 0.5 * (v - ret) ** 2
    loss = pg + cfg.vf_coef * vl - cfg.ent_coef * ent
    if kl_coeff > 0.0:
        # the log term unclamped: beyond the ratio's clamp it still pulls toward pi_old with -grad log pi
        k3 = (ratio - 1) - (logp - old_logp)
        loss = loss + kl_coeff * (k3 if weight is None else weight * k3)
    return loss, pg, vl, ratio


def _ppo_task_loss(call, tb, cfg: PPOConfig, kl_coeff: float = 0.0) -> tuple[torch.Tensor, dict]:
    """One task's (masked) PPO loss for the vmapped per-task gradients; aux: the masked sums
    of its parts (:func:`_stat_parts`), so the surgery path needs no second forward pass."""
    logp, ent, v = call(tb["obs"], tb["tids"], tb["acts"])
    per_sample, pg, vl, ratio = _ppo_per_sample(logp, ent, v, tb["old_logp"], tb["adv"], tb["ret"], cfg, kl_coeff,
                                                tb.get("weight"))
    m = tb["mask"]
    aux = {k: (x.detach() * m).sum() for k, x in _stat_parts(pg, vl, ent, ratio, logp, tb["old_logp"], cfg).items()}
    return (per_sample * m).sum() / m.sum().clamp_min(1.0), aux


def _stat_parts(pg, vl, ent, ratio, logp, old_logp, cfg: PPOConfig) -> dict[str, torch.Tensor]:
    """Per-sample quantities whose per-task means are logged (KL: Schulman's k3 estimator)."""
    return {"policy": pg, "value": vl, "entropy": ent, "approx_kl": (ratio - 1) - (logp - old_logp),
            "clip_frac": ((ratio - 1).abs() > cfg.clip).to(pg.dtype)}


def compute_gae(rollout: dict[str, np.ndarray], gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """GAE per env slot over a ``[S, N]`` rollout; returns ``(advantages, returns)``."""
    rewards = rollout["rewards"] + gamma * rollout["bootstrap"]  # V(final obs) on truncation
    dones = rollout["terminated"] | rollout["truncated"]
    values = rollout["values"]
    S = rewards.shape[0]
    adv = np.zeros_like(values)
    last = np.zeros_like(values[0])
    for t in reversed(range(S)):
        next_value = rollout["last_values"] if t == S - 1 else values[t + 1]
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * nonterminal - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv, adv + values


def _per_task_abs_mean(x: np.ndarray, task_ids: np.ndarray, num_tasks: int) -> np.ndarray:
    """Mean of ``|x|`` over each task's entries (NaN for a task with none)."""
    t = np.asarray(task_ids).ravel()
    n = np.bincount(t, minlength=num_tasks)
    s = np.bincount(t, weights=np.abs(np.asarray(x, np.float64)).ravel(), minlength=num_tasks)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def build_policy(spec: dict[str, Any]) -> torch.nn.Module:
    """The network a learner trains and a runner steps envs with, from a ``policy_spec``."""
    from mtrl.agents.sac_networks import TanhGaussianActor

    spec = dict(spec)
    cls = {"ppo": ActorCritic, "options": OptionActorCritic, "sac": TanhGaussianActor}[spec.pop("kind", "ppo")]
    return cls(**spec)


class MTPPO:
    """Multi-task PPO learner; the policy runs on runners as a CPU copy (:meth:`policy_state`)."""

    name = "mtppo"
    on_policy = True

    def __init__(self, cfg: PPOConfig, obs_dim: int, num_tasks: int, action_space: gym.Space, seed: int = 0,
                 surgery: str = "mean", surgery_args: dict | None = None, diagnostics_every: int = 0):
        if cfg.heads not in ("single", "multi", "ensemble", "options"):
            raise ValueError(f"ppo.heads must be 'single', 'multi', 'ensemble' or 'options', got {cfg.heads!r}")
        if cfg.heads == "ensemble" and surgery != "mean":
            raise ValueError(f"ppo.heads=ensemble shares no parameters, so surgery={surgery!r} has nothing to "
                             "combine; use surgery=mean")
        if cfg.adv_norm not in ("batch", "task", "none"):
            raise ValueError(f"ppo.adv_norm must be 'batch', 'task' or 'none', got {cfg.adv_norm!r}")
        if not (cfg.kl_coeff >= 0.0 and cfg.kl_target > 0.0):  # also refuses NaN
            raise ValueError(f"ppo.kl_coeff must be >= 0 and ppo.kl_target > 0, got {cfg.kl_coeff!r}, {cfg.kl_target!r}")
        self.cfg = cfg
        self.num_tasks = num_tasks
        self.policy_spec: dict[str, Any] = dict(kind="ppo", obs_dim=obs_dim, num_tasks=num_tasks, action_space=action_space,
                                                hidden=list(cfg.hidden), heads=cfg.heads)
        if cfg.encoder != "flat":
            if cfg.heads == "options":
                raise ValueError("obs: image is not available with ppo.heads=options")
            self.policy_spec["encoder"] = cfg.encoder
        if cfg.arch != "mlp":  # absent for the plain MLP: specs of earlier runs stay valid
            if cfg.heads == "options":
                raise ValueError(f"ppo.arch={cfg.arch} is not available with ppo.heads=options (its own two-level policy)")
            self.policy_spec.update(arch=cfg.arch, arch_args=dict(cfg.arch_args))
        if cfg.heads == "options":
            self.policy_spec.update(kind="options", options=cfg.options)
        torch.manual_seed(seed)
        self.net = build_policy(self.policy_spec)
        self.opt = optim.adam(self.net.parameters(), cfg.lr, eps=1e-5)
        self.gen = torch.Generator().manual_seed(seed + 12345)
        self.updates = 0
        self.nan_skips = 0
        self.kl_coeff = float(cfg.kl_coeff)  # the adaptive KL penalty's current weight (checkpointed)
        self.surgery = SurgeryStep(self.net, get_surgery(surgery, **dict(surgery_args or {})), diagnostics_every)
        # An extra loss term added to every minibatch's loss (None: none), e.g. CAMRL's transfer
        # regulariser installed by the curriculum; its gradient is added after surgery.
        self.extra_loss: Callable[[], torch.Tensor | None] | None = None

    @property
    def policy(self) -> ActorCritic:
        return self.net

    @property
    def networks(self) -> dict[str, torch.nn.Module]:
        """The trained networks by name (parameter counts at start)."""
        return {"policy": self.net}

    def policy_state(self) -> dict[str, torch.Tensor]:
        """Weights for the runners (CPU tensors)."""
        return {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "gen": self.gen.get_state(),
                "updates": self.updates, "nan_skips": self.nan_skips, "surgery": self.surgery.state_dict(),
                "kl_coeff": self.kl_coeff}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        optim.load_state(self.opt, state["opt"])
        self.gen.set_state(state["gen"])
        self.updates, self.nan_skips = state["updates"], state["nan_skips"]
        saved = float(state.get("kl_coeff", 0.0))  # absent before the KL penalty existed
        self.kl_coeff = saved if saved > 0.0 and self.cfg.kl_coeff > 0.0 else float(self.cfg.kl_coeff)
        if "surgery" in state:  # absent in checkpoints written before gradient surgery existed
            self.surgery.load_state_dict(state["surgery"])

    def task_stats(self, out: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Per-task (loss, error magnitude) of an :meth:`update` output for task schedulers:
        the PPO task loss and the mean |GAE| (NaN where unknown)."""
        nan = np.full(self.num_tasks, np.nan)
        return (np.asarray(out.get("loss/task", nan), np.float64), np.asarray(out.get("ppo/abs_gae", nan), np.float64))

    def _normalise(self, adv: torch.Tensor, tids: torch.Tensor) -> torch.Tensor:
        if self.cfg.adv_norm == "none":
            return adv
        if self.cfg.adv_norm == "batch":
            return (adv - adv.mean()) / (adv.std() + 1e-8) if adv.numel() > 1 else adv
        mean, _ = per_task_mean(adv, tids, self.num_tasks)
        var, _ = per_task_mean((adv - mean[tids]) ** 2, tids, self.num_tasks)
        return (adv - mean[tids]) / (var[tids].sqrt() + 1e-8)

    def update(self, rollout: dict[str, np.ndarray], progress: float = 0.0) -> dict[str, Any]:
        """One PPO update on a rollout; ``progress`` in [0, 1] drives LR annealing."""
        cfg = self.cfg
        if cfg.anneal_lr:
            for g in self.opt.param_groups:
                g["lr"] = cfg.lr * max(1.0 - progress, 0.0)
        adv, ret = compute_gae(rollout, cfg.gamma, cfg.gae_lambda)
        abs_gae = _per_task_abs_mean(adv, rollout["task_ids"], self.num_tasks)
        obs, acts, old_logp, tids = (_tensor(rollout[k]).flatten(0, 1) for k in ("obs", "actions", "logp", "task_ids"))
        is_w = None
        if cfg.decoupled:  # pi_prox: this policy before the update; the behaviour policy only weights
            with torch.no_grad():
                prox_logp = self.net(obs, tids, acts)[0]
            is_w = (prox_logp - old_logp).clamp(max=math.log(IS_MAX)).exp()
            old_logp = prox_logp
        adv_t = torch.as_tensor(adv).flatten(0, 1).float()
        ret_t = torch.as_tensor(ret).flatten(0, 1).float()
        B = obs.shape[0]
        mb = max(B // cfg.minibatches, 1)
        sums: dict[str, torch.Tensor] = {}
        extras: dict[str, Any] = {}
        n_mb = 0
        last_kl = math.nan
        for _ in range(cfg.epochs):
            perm = torch.randperm(B, generator=self.gen)
            for start in range(0, B - mb + 1, mb):
                idx = perm[start:start + mb]
                t = tids[idx]
                a = self._normalise(adv_t[idx], t)
                self.opt.zero_grad(set_to_none=True)
                surgery = self.surgery.active()
                if surgery:  # per-task gradients; losses and statistics come from the same vmapped pass
                    rows, mask = group_by_task(t, self.num_tasks)
                    sel = idx[rows]  # [T, n_max] rollout rows: one gather per field
                    tb = {"obs": obs[sel], "tids": t[rows], "acts": acts[sel], "old_logp": old_logp[sel],
                          "adv": a.detach()[rows], "ret": ret_t[sel], "mask": mask.float()}
                    if is_w is not None:
                        tb["weight"] = is_w[sel]
                    res = self.surgery(_ppo_task_loss, tb, (cfg, self.kl_coeff), present=mask.any(1))
                    task_loss, part_sums, counts = res["losses"], res["aux"], mask.sum(1).float()
                    surgery_out = res["stats"]
                else:
                    logp, ent, v = self.net(obs[idx], t, acts[idx])
                    per_sample, pg, vl, ratio = _ppo_per_sample(logp, ent, v, old_logp[idx], a, ret_t[idx], cfg,
                                                                self.kl_coeff, None if is_w is None else is_w[idx])
                    task_loss, _ = per_task_mean(per_sample, t, self.num_tasks)
                    counts = torch.bincount(t, minlength=self.num_tasks).float()
                    parts = _stat_parts(pg, vl, ent, ratio, logp, old_logp[idx], cfg)
                    part_sums = {k: torch.zeros(self.num_tasks).index_add_(0, t, x.detach()) for k, x in parts.items()}
                    surgery_out = {}
                loss = mean_of_present(task_loss, counts > 0)
                extra = self.extra_loss() if self.extra_loss is not None else None
                if not torch.isfinite(loss) or (extra is not None and not torch.isfinite(extra)):
                    self.opt.zero_grad(set_to_none=True)
                    self.nan_skips += 1
                    warnings.warn(f"non-finite PPO loss at update {self.updates}; minibatch skipped", stacklevel=2)
                    continue
                if not surgery:
                    (loss if extra is None else loss + extra).backward()
                elif extra is not None:
                    extra.backward()  # accumulates onto the aggregated task gradients
                if extra is not None:
                    sums["loss/extra"] = sums.get("loss/extra", 0) + extra.detach()
                gnorm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.max_grad_norm)
                if not torch.isfinite(gnorm):  # a finite loss can still have an inf/NaN gradient
                    self.opt.zero_grad(set_to_none=True)
                    self.nan_skips += 1
                    warnings.warn(f"non-finite PPO gradient at update {self.updates}; minibatch skipped", stacklevel=2)
                    continue
                self.opt.step()
                n_t = counts.clamp_min(1.0)
                stats = {"loss/task": task_loss.detach(), "loss/policy": part_sums["policy"] / n_t,
                         "loss/value": part_sums["value"] / n_t, "loss/entropy": part_sums["entropy"] / n_t,
                         "ppo/approx_kl": part_sums["approx_kl"].sum() / counts.sum(),
                         "ppo/clip_frac": part_sums["clip_frac"].sum() / counts.sum()}
                for k, val in stats.items():
                    sums[k] = sums.get(k, 0) + val
                if self.kl_coeff > 0.0:  # the adaptive penalty's statistic: the last minibatch's KL (as RLlib's)
                    last_kl = float(stats["ppo/approx_kl"])
                n_mb += 1
                extras.update(surgery_out)
        self.updates += 1
        out: dict[str, Any] = {k: (v / max(n_mb, 1)).numpy() for k, v in sums.items()}
        if self.kl_coeff > 0.0 and math.isfinite(last_kl):  # the adaptive penalty's weight, for the next update
            if last_kl > 2.0 * cfg.kl_target:
                self.kl_coeff *= 1.5
            elif last_kl < 0.5 * cfg.kl_target:
                self.kl_coeff *= 0.5
        out["ppo/kl_coeff"] = self.kl_coeff
        if is_w is not None:  # how stale the behaviour policy was: 1 = not at all
            out["ppo/is_weight_mean"] = float(is_w.mean())
            out["ppo/is_weight_max"] = float(is_w.max())
        out.update(extras)  # surgery stats and diagnostics of the last minibatch
        out["ppo/abs_gae"] = abs_gae  # PLR's task score (mean |GAE| per task, before normalisation)
        out["ppo/lr"] = self.opt.param_groups[0]["lr"]
        out["ppo/nan_skips"] = self.nan_skips
        var_y = float(np.var(ret))
        out["ppo/explained_variance"] = math.nan if var_y == 0 else 1 - float(np.var(ret - rollout["values"])) / var_y
        return out
