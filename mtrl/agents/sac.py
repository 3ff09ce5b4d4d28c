"""MT-SAC: soft actor-critic (Haarnoja et al. 2018) on task-balanced batches, losses kept per task.

For a batch laid out task-major (``[T, B/T]``, see :mod:`mtrl.buffers`) and alpha_t = exp(log alpha_t),
one learnable temperature per task (Yu et al. 2019, Meta-World's MT-SAC):

    y_i        = r_i + gamma (1 - d_i) [min_k Q'_k(s'_i, a'_i) - alpha_{t_i} log pi(a'_i|s'_i)],  a' ~ pi(.|s')
    L^Q_t      = mean_{i in t} 1/2 sum_k (Q_k(s_i, a_i) - y_i)^2
    L^pi_t     = mean_{i in t} [alpha_{t_i} log pi(a~_i|s_i) - min_k Q_k(s_i, a~_i)],          a~ ~ pi(.|s)
    L^alpha_t  = mean_{i in t} [-log alpha_t (log pi(a~_i|s_i) + H_target)],                  H_target = -|A|

Critic and actor minimise the mean of their ``[T]`` vectors, or, with ``surgery: NAME``, follow
that aggregator over their per-task gradients (:mod:`mtrl.surgery`); the temperatures minimise the *sum*, so each alpha_t gets exactly its own task's
gradient at full scale. Targets: Polyak averaging with rate tau. A step whose loss is NaN/inf
is skipped with a warning and counted (``sac/nan_skips``).

Recipes for sample efficiency (``SACConfig``; each keeps the ``[T]`` per-task losses, so surgery
works unchanged):

- ``critic: bronet``: LayerNorm residual critic (BRO, arXiv 2405.16158) of its own width.
- ``alpha_min``: a floor under each task's temperature, log alpha_t <- max(log alpha_t, log
  alpha_min) after every temperature step. Why: on Meta-World's window-open the critic stays
  flat for the first ~100k steps, the policy stays near maximum entropy whatever alpha is, so
  the temperature loss drives alpha_t down at Adam's full rate (1 -> 0.008 by 136k steps); when
  the critic then takes shape the policy collapses to near-determinism (entropy 2.7 -> -4.5 in
  30k steps) with little exploration left (measured, benchmarks/sac_recipes.py). Clamping is the
  simplest fix (a lower bound as in e.g. the fixed-temperature SAC of Haarnoja et al. 2018a, here
  only as a floor under the learned one). Measured with it (reach4, seed 1, with
  ``critic_layer_norm``): the entropy stayed at 2.0-2.5, yet window-open's first loss (0.9 -> 0.0
  between two evaluations) still happened, so the collapse was not its cause (BENCHMARKS.md).
- ``actor_ema``: evaluation and recording act with a Polyak average of the actor's weights,
  theta_avg <- (1 - actor_ema) theta_avg + actor_ema theta after every actor step (weight averaging
  for stability, Nikishin et al. 2018, "Improving Stability in Deep RL with Weight Averaging"; the
  target networks' update applied to the actor). Training, the runners' exploration and every
  loss use the actor itself, so a run with it trains exactly as one without. Why: on reach4 the
  deterministic success of window-open and button-press-topdown swings between 0.2 and 1.0 from
  one evaluation to the next (20k env steps apart) while the training curve rises. Measured on one
  training trajectory (reach4, seed 1, rate 0.001): the averaged actor scored higher at 25 of 35
  evaluations, with a third of the swing between them (BENCHMARKS.md).
- ``critic_layer_norm``: the ``mlp`` critic (shared trunk or per-task ensemble) with LayerNorm
  before each hidden activation, ``h = relu(LN(W x + b))`` (RLPD, Ball et al. 2023, arXiv
  2302.02948: it bounds Q by the output layer's norm and curbs over-estimation off the data).
- ``critic_loss: categorical``: each critic outputs logits over ``bins`` atoms z_i evenly spaced
  in [v_min, v_max], Q = sum_i softmax(l)_i z_i, and is trained by cross-entropy to the two-hot
  projection of the scalar target y: ``L^Q_t = mean_{i in t} -sum_k sum_j p_j(y_i) log softmax(l_k)_j``
  (Farebrother et al. 2024, arXiv 2403.03950). Choice: BRC (arXiv 2505.23150) projects the
  target critic's whole shifted distribution (C51); projecting its expectation keeps one code
  path for min/mean targets and the per-task entropy term, at the cost of the distribution's shape.
- ``target: mean``: y and the actor use the mean of the twin critics instead of their minimum.
- ``task_embedding: d``: a learned unit-norm task embedding appended to actor and critic inputs.
- ``weight_decay > 0``: AdamW.
- ``precision: bf16``: the update's matrix products in bfloat16 under autocast, weights, output
  layers and losses in float32 (:mod:`mtrl.agents.precision`; 0.51-0.73x the update time on a
  CPU with AVX-512 BF16). Runners act in float32.

``device``: where the networks, optimiser state and update live (:mod:`mtrl.agents.device`);
batches come from the host-memory replay buffer and are copied per update, the policy noise is
drawn from the learner's CPU generator (so a GPU run draws the same noise as a CPU one), and
:meth:`MTSAC.policy_state` hands runners CPU tensors.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from mtrl.agents import optim, precision
from mtrl.agents.losses import per_task_mean
from mtrl.agents.sac_networks import (
    TanhGaussianActor,
    TwinQ,
    two_hot,
    upgrade_ensemble_critic,
    upgrade_ensemble_critic_opt,
)
from mtrl.layout import task_major
from mtrl.surgery import get as get_surgery
from mtrl.surgery.apply import SurgeryStep


@dataclass
class SACConfig:
    """MT-SAC hyper-parameters (defaults: the Meta-World MT10 papers' settings)."""

    lr: float = 3e-4  # actor and critic
    alpha_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int | None = None  # total over tasks; None: batch_per_task x T (MT10: 1280)
    batch_per_task: int = 128
    hidden: list[int] = field(default_factory=lambda: [400, 400, 400])
    heads: str = "single"  # single | multi | ensemble (one actor and twin critic per task)
    arch: str = "mlp"  # trunk of the actor and the MLP critics: mtrl.agents.archs (mlp, multihead, film, softmod, ...)
    arch_args: dict[str, Any] = field(default_factory=dict)  # the architecture's options (e.g. experts: 4)
    init_alpha: float = 1.0
    alpha_min: float = 0.0  # > 0: a floor under every task's temperature (log alpha clamped after each step)
    actor_ema: float = 0.0  # > 0: evaluate and record with a Polyak average of the actor (this rate per step)
    target_entropy: float | None = None  # None: -|A|
    buffer_per_task: int = 100_000  # transitions kept per task
    learning_starts: int = 5_000  # env steps (all tasks) of uniform random actions before updates
    utd: float = 1.0  # gradient updates per vector step (one transition from every env slot)
    collect_steps: int = 50  # vector steps a runner takes per round trip
    weights_every: int = 1  # push actor weights to runners every K collection rounds
    actor_update_freq: int = 1
    target_update_freq: int = 1
    save_buffer: bool = False  # write the replay buffer next to each checkpoint
    # Critic and actor recipes (issue: sample-efficient MT-SAC); the defaults are the MT-SAC paper's.
    critic: str = "mlp"  # mlp (``hidden``) | bronet (LayerNorm residual, ``critic_width`` x ``critic_blocks``)
    critic_width: int = 512
    critic_blocks: int = 2
    critic_layer_norm: bool = False  # mlp critic: LayerNorm before each hidden activation (RLPD)
    critic_loss: str = "mse"  # mse | categorical (cross-entropy on ``bins`` atoms in [v_min, v_max])
    bins: int = 101
    v_min: float = -10.0
    v_max: float = 10.0
    target: str = "min"  # how the twin critics combine in the target and the actor loss: min | mean
    task_embedding: int = 0  # > 0: a learned unit-norm task embedding of this size for actor and critic
    weight_decay: float = 0.0  # > 0: AdamW with this decoupled weight decay (actor and critic)
    precision: str = "fp32"  # fp32 | bf16 | auto (bf16 where the CPU has bfloat16 instructions): mtrl.agents.precision


def _critic_task_loss(call, tb):
    """One task's critic loss (for the vmapped per-task gradients) and its mean Q."""
    q = call(tb["obs"], tb["act"], tb["tids"])
    return (0.5 * (q - tb["y"]).pow(2).sum(0)).mean(), {"q": q.mean()}


def _critic_task_ce(call, tb):
    """One task's categorical critic loss: cross-entropy of both critics to the two-hot target."""
    logits = call(tb["obs"], tb["act"], tb["tids"], logits=True)  # [2, n, bins]
    logp = logits.log_softmax(-1)
    q = (logp.exp() * tb["support"]).sum(-1)
    return -(tb["p"] * logp).sum(-1).sum(0).mean(), {"q": q.mean()}


def _combine(q: torch.Tensor, how: str) -> torch.Tensor:
    """The twin critics ``[2, B]`` -> ``[B]``: their minimum (clipped double Q, Fujimoto et al.
    2018) or their mean (BRC: with a categorical critic the mean is less pessimistic)."""
    return q.min(0).values if how == "min" else q.mean(0)


def _actor_task_loss(call, tb, critic_fn, how: str = "min"):
    """One task's actor loss with the critic held fixed, and its log-probabilities."""
    a, logp = call(tb["obs"], tb["tids"], eps=tb["eps"])
    q = _combine(critic_fn(tb["obs"], a, tb["tids"]), how)
    return (tb["alpha"] * logp - q).mean(), {"logp": logp}


class MTSAC:
    """Multi-task SAC learner; runners hold a CPU copy of the actor (:meth:`policy_state`)."""

    name = "mtsac"
    on_policy = False

    def __init__(self, cfg: SACConfig, obs_dim: int, num_tasks: int, action_space: gym.Space, seed: int = 0,
                 surgery: str = "mean", surgery_args: dict | None = None, diagnostics_every: int = 0,
                 device: str | torch.device = "cpu"):
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"MT-SAC needs continuous (Box) actions, got {action_space}; use mtppo")
        if not (np.all(action_space.low == -1) and np.all(action_space.high == 1)):
            raise ValueError(f"MT-SAC's tanh policy expects actions in [-1, 1], got {action_space}")
        if cfg.heads == "ensemble" and surgery != "mean":
            raise ValueError(f"sac.heads=ensemble shares no parameters, so surgery={surgery!r} has nothing to "
                             "combine; use surgery=mean")
        self.cfg = cfg
        self.num_tasks = T = num_tasks
        self.act_dim = A = int(np.prod(action_space.shape))
        self.batch_size = cfg.batch_size or cfg.batch_per_task * T
        if self.batch_size % T:
            raise ValueError(f"sac.batch_size={self.batch_size} is not a multiple of the {T} tasks")
        self.per_task = self.batch_size // T
        self.target_entropy = float(-A if cfg.target_entropy is None else cfg.target_entropy)
        for key, v, ok in [("critic", cfg.critic, ("mlp", "bronet")), ("critic_loss", cfg.critic_loss, ("mse", "categorical")),
                           ("target", cfg.target, ("min", "mean"))]:
            if v not in ok:
                raise ValueError(f"unknown sac.{key} {v!r}; valid: {', '.join(repr(o) for o in ok)}")
        if cfg.critic_loss == "categorical" and (cfg.bins < 2 or cfg.v_min >= cfg.v_max):
            raise ValueError(f"a categorical critic needs sac.bins >= 2 and v_min < v_max, got {cfg.bins}, "
                             f"[{cfg.v_min}, {cfg.v_max}]")
        if cfg.task_embedding < 0 or cfg.weight_decay < 0:
            raise ValueError(f"sac.task_embedding and sac.weight_decay must be >= 0, got {cfg.task_embedding}, "
                             f"{cfg.weight_decay}")
        self.categorical = cfg.critic_loss == "categorical"
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is not None:
            torch.cuda.set_device(self.device)  # pinned copies go through the current device (not GPU 0)
        self.precision = precision.resolve(cfg.precision, self.device.type)  # auto -> bf16 or fp32 here
        self.policy_spec: dict[str, Any] = dict(kind="sac", obs_dim=obs_dim, num_tasks=T, act_dim=A,
                                                hidden=list(cfg.hidden), heads=cfg.heads,
                                                task_embedding=cfg.task_embedding)
        if cfg.arch != "mlp":  # absent for the plain MLP: specs of earlier runs stay valid
            self.policy_spec.update(arch=cfg.arch, arch_args=dict(cfg.arch_args))
        torch.manual_seed(seed)
        self.actor = TanhGaussianActor(obs_dim, T, A, cfg.hidden, cfg.heads, task_embedding=cfg.task_embedding,
                                       arch=cfg.arch, arch_args=dict(cfg.arch_args))
        critic_args = dict(arch=cfg.critic, width=cfg.critic_width, blocks=cfg.critic_blocks,
                           bins=cfg.bins if self.categorical else 1, v_min=cfg.v_min, v_max=cfg.v_max,
                           task_embedding=cfg.task_embedding, trunk=cfg.arch, trunk_args=dict(cfg.arch_args),
                           layer_norm=cfg.critic_layer_norm)
        self.critic = TwinQ(obs_dim, A, T, cfg.hidden, cfg.heads, **critic_args)
        self.critic_target = TwinQ(obs_dim, A, T, cfg.hidden, cfg.heads, **critic_args)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        for net in (self.actor, self.critic, self.critic_target):
            net.to(self.device)
        # the evaluation policy: a Polyak average of the actor (None: the actor itself)
        self.actor_avg = copy.deepcopy(self.actor).requires_grad_(False) if cfg.actor_ema > 0 else None
        self.log_alpha = torch.nn.Parameter(torch.full((T,), math.log(cfg.init_alpha), device=self.device))
        # AdamW (decoupled weight decay, Loshchilov & Hutter 2019) when asked; the same state layout as Adam
        self.actor_opt = optim.adam(self.actor.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
        self.critic_opt = optim.adam(self.critic.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
        self.alpha_opt = optim.adam([self.log_alpha], cfg.alpha_lr)
        self.gen = torch.Generator().manual_seed(seed + 4242)
        self.updates = 0
        self.nan_skips = 0
        args = dict(surgery_args or {})
        # one aggregator per loss: stateful methods (momentum, loss history) must not mix them
        self.critic_surgery = SurgeryStep(self.critic, get_surgery(surgery, **args), diagnostics_every)
        self.actor_surgery = SurgeryStep(self.actor, get_surgery(surgery, **args), diagnostics_every)
        # An extra actor-loss term (None: none), e.g. CAMRL's transfer regulariser on the per-task
        # actors installed by the curriculum; its gradient is added after surgery.
        self.extra_loss: Callable[[], torch.Tensor | None] | None = None
        # Data-parallel learners (mtrl.learners): averages tensors in place over the learners, each of
        # which updates on its share of the batch; applied to losses before the NaN checks and to
        # gradients before every optimiser step, so all learners take the same step. None: one learner.
        self.sync: Callable[[list[torch.Tensor]], None] | None = None

    def set_sync(self, sync: Callable[[list[torch.Tensor]], None] | None) -> None:
        """Join data-parallel learning (``sync`` averages tensors over the learners, in place)."""
        self.sync = sync
        self.critic_surgery.sync = self.actor_surgery.sync = sync

    def _mean(self, *xs: torch.Tensor) -> list[torch.Tensor]:
        """Detached copies of ``xs`` averaged over the learners (themselves with one learner)."""
        out = [x.detach().clone() for x in xs]
        if self.sync is not None:
            self.sync(out)
        return out

    def _sync_grads(self, params) -> None:
        """Average the gradients of ``params`` over the learners (a missing one counts as zero)."""
        if self.sync is None:
            return
        params = list(params)
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.sync([p.grad for p in params])

    @property
    def policy(self) -> TanhGaussianActor:
        return self.actor

    @property
    def eval_policy(self) -> TanhGaussianActor:
        """The policy evaluation and recording act with: the averaged actor with ``actor_ema``."""
        return self.actor if self.actor_avg is None else self.actor_avg

    @property
    def networks(self) -> dict[str, torch.nn.Module]:
        """The trained networks by name (parameter counts at start)."""
        return {"actor": self.actor, "critic": self.critic}

    def policy_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.actor.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "critic_target": self.critic_target.state_dict(), "log_alpha": self.log_alpha.detach().clone(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "alpha_opt": self.alpha_opt.state_dict(), "gen": self.gen.get_state(),
                "updates": self.updates, "nan_skips": self.nan_skips,
                "critic_surgery": self.critic_surgery.state_dict(), "actor_surgery": self.actor_surgery.state_dict(),
                **({"actor_avg": self.actor_avg.state_dict()} if self.actor_avg is not None else {})}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        if "group_gen" in s and self.sync is None:
            warnings.warn("resuming a run trained with learners > 1 with one learner: the policy noise now comes from "
                          "the learner's own generator, so the run does not continue exactly", stacklevel=2)
        self.actor.load_state_dict(s["actor"])
        self.critic.load_state_dict(upgrade_ensemble_critic(s["critic"]))  # older checkpoints: ensemble layout
        self.critic_target.load_state_dict(upgrade_ensemble_critic(s["critic_target"]))
        with torch.no_grad():
            self.log_alpha.copy_(s["log_alpha"])
        optim.load_state(self.actor_opt, s["actor_opt"])
        names = [n for n, _ in self.critic.named_parameters()]
        optim.load_state(self.critic_opt, upgrade_ensemble_critic_opt(s["critic_opt"], names))
        optim.load_state(self.alpha_opt, s["alpha_opt"])
        self.gen.set_state(s["gen"])
        self.updates, self.nan_skips = s["updates"], s["nan_skips"]
        if "critic_surgery" in s:  # absent in checkpoints written before gradient surgery existed
            self.critic_surgery.load_state_dict(s["critic_surgery"])
            self.actor_surgery.load_state_dict(s["actor_surgery"])
        if self.actor_avg is not None:  # a run without the average starts it from the actor
            self.actor_avg.load_state_dict(s.get("actor_avg", s["actor"]))

    def task_stats(self, out: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Per-task (loss, error magnitude) of an :meth:`update` output for task schedulers: the
        critic loss and the RMS TD error (the loss is (Q1 - y)^2 / 2 + (Q2 - y)^2 / 2 averaged, so
        its square root is the RMS TD error; for a categorical critic it is the square root of the
        cross-entropy, a monotone stand-in); NaN where unknown."""
        loss = np.asarray(out.get("loss/critic", np.full(self.num_tasks, np.nan)), np.float64)
        return loss, np.sqrt(np.maximum(loss, 0.0))

    def _skip(self, what: str) -> None:
        self.nan_skips += 1
        warnings.warn(f"non-finite MT-SAC {what} loss at update {self.updates}; update skipped", stacklevel=3)

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """One gradient step of critic (and actor/temperatures, every ``actor_update_freq``), in
        the configured ``precision``."""
        rows = None
        if self.device.type != "cpu":  # checked on the host: the per-task layers then need no GPU wait
            tids = np.asarray(batch["task_ids"])
            if len(tids) % self.num_tasks == 0 and np.array_equal(
                    tids, np.repeat(np.arange(self.num_tasks), len(tids) // self.num_tasks)):
                rows = len(tids)
        with precision.autocast(self.precision, self.device.type), task_major(rows):
            return self._update(batch)

    def _inputs(self, batch: dict[str, np.ndarray]) -> tuple[list[torch.Tensor], dict[str, torch.Tensor],
                                                            torch.Tensor | None]:
        """The batch's arrays (obs, actions, rewards, next_obs, terminated, task_ids) and the policy
        noise given with it, as tensors on the learner's device (no copy on the CPU), and the
        generator's state before the actor's noise where it was drawn here (else None).

        On a GPU the noise a CPU learner would draw inside the update (``eps_next`` for the target,
        then ``eps`` for the actor when its update is due, in that order from the same generator,
        so the draws are the same) is drawn here, and everything goes over in pinned-memory,
        non-blocking copies: no copy waits for the GPU's queue to drain (a pageable copy would).
        """
        keys = ("obs", "actions", "rewards", "next_obs", "terminated", "task_ids")
        arrays = [torch.as_tensor(batch[k]) for k in keys]
        noise = {k: torch.as_tensor(batch[k]) for k in ("eps_next", "eps") if k in batch}
        if self.device.type == "cpu":
            return arrays, noise, None
        shape = (arrays[0].shape[0], self.act_dim)
        if "eps_next" not in noise:
            noise["eps_next"] = torch.randn(shape, generator=self.gen)
        before_eps = None
        if "eps" not in noise and (self.updates + 1) % self.cfg.actor_update_freq == 0:
            before_eps = self.gen.get_state()  # put back if the critic step is skipped (NaN)
            noise["eps"] = torch.randn(shape, generator=self.gen)
        moved = [t.pin_memory().to(self.device, non_blocking=True) for t in [*arrays, *noise.values()]]
        return moved[:len(keys)], dict(zip(noise, moved[len(keys):])), before_eps

    def _update(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        cfg = self.cfg
        (obs, act, rew, nobs, done, tids), noise, before_eps = self._inputs(batch)
        alpha = self.log_alpha.detach().exp()
        out: dict[str, Any] = {}
        # The policy noise may come with the batch (data-parallel learners: drawn once for the whole
        # batch, so that N learners on its shares match one learner on all of it).
        with torch.no_grad():
            na, nlogp = self.actor(nobs, tids, self.gen, eps=noise.get("eps_next"))
            q_next = _combine(self.critic_target(nobs, na, tids), cfg.target) - alpha[tids] * nlogp
            y = rew + cfg.gamma * (1.0 - done) * q_next
        self.updates += 1
        if not self._critic_step(obs, act, tids, y, out):
            if before_eps is not None:  # a CPU learner draws no actor noise then
                self.gen.set_state(before_eps)
            return {"sac/nan_skips": self.nan_skips}
        if self.updates % cfg.actor_update_freq == 0:
            self._actor_step(obs, tids, alpha, out, noise.get("eps"))
        if self.updates % cfg.target_update_freq == 0:
            _polyak_(self.critic_target, self.critic, cfg.tau)
        out["sac/alpha"] = self.log_alpha.detach().exp()
        out["sac/nan_skips"] = self.nan_skips
        return _to_numpy(out)

    def _critic_step(self, obs, act, tids, y, out: dict[str, Any]) -> bool:
        """Critic update (plain backward, or per-task gradients + surgery); False if skipped (NaN)."""
        T, n = self.num_tasks, self.per_task
        self.critic_opt.zero_grad(set_to_none=True)
        if self.categorical:  # two_hot cannot place a NaN target (every learner skips if any share has one)
            finite, = self._mean(torch.isfinite(y).all().to(torch.float32))
            if float(finite) < 1.0:
                self.critic_opt.zero_grad(set_to_none=True)
                self._skip("critic")
                return False
        p = two_hot(y, self.critic.support) if self.categorical else None  # [B, bins] target distribution
        if self.critic_surgery.active():
            tb = {"obs": obs.view(T, n, -1), "act": act.view(T, n, -1), "tids": tids.view(T, n), "y": y.view(T, n)}
            if self.categorical:
                tb["p"] = p.view(T, n, -1)
                tb["support"] = self.critic.support.expand(T, -1)
            res = self.critic_surgery(_critic_task_ce if self.categorical else _critic_task_loss, tb)
            critic_task = res["losses"]
            q_task, = self._mean(res["aux"]["q"])
            out.update(_prefixed("critic", res["stats"]))
            ok = bool(torch.isfinite(critic_task).all())
        else:
            if self.categorical:
                logp = self.critic(obs, act, tids, logits=True).log_softmax(-1)  # [2, B, bins]
                q = (logp.exp() * self.critic.support).sum(-1)
                sample_loss = -(p * logp).sum(-1).sum(0)
            else:
                q = self.critic(obs, act, tids)
                sample_loss = 0.5 * (q - y).pow(2).sum(0)
            local_task, _ = per_task_mean(sample_loss, tids, T)
            critic_task, q_task = self._mean(local_task, per_task_mean(q.detach().mean(0), tids, T)[0])
            ok = bool(torch.isfinite(critic_task).all())
            if ok:
                local_task.mean().backward()
                self._sync_grads(self.critic.parameters())
        if not ok:
            self.critic_opt.zero_grad(set_to_none=True)
            self._skip("critic")
            return False
        self.critic_opt.step()
        out["loss/critic"] = critic_task.detach()
        out["sac/q"] = q_task.detach()
        return True

    def _actor_step(self, obs, tids, alpha, out: dict[str, Any], eps: torch.Tensor | None = None) -> None:
        """Actor update (plain or surgery) and the temperatures' update (always per task)."""
        T, n = self.num_tasks, self.per_task
        if eps is None:
            eps = torch.randn((obs.shape[0], self.act_dim), generator=self.gen).to(self.device)
        self.actor_opt.zero_grad(set_to_none=True)
        surgery = self.actor_surgery.active()
        if surgery:
            fixed = {k: v.detach() for k, v in self.critic.state_dict().items()}

            def critic_fn(o, a_, t_):
                return torch.func.functional_call(self.critic, fixed, (o, a_, t_))

            tb = {"obs": obs.view(T, n, -1), "tids": tids.view(T, n), "eps": eps.view(T, n, -1),
                  "alpha": alpha[tids].view(T, n)}
            res = self.actor_surgery(_actor_task_loss, tb, (critic_fn, self.cfg.target))
            actor_task, logp = res["losses"], res["aux"]["logp"].reshape(-1)
            out.update(_prefixed("actor", res["stats"]))
        else:
            a, logp = self.actor(obs, tids, eps=eps)
            q_pi = _combine(self.critic(obs, a, tids), self.cfg.target)
            actor_task, _ = per_task_mean(alpha[tids] * logp - q_pi, tids, T)
        alpha_task, _ = per_task_mean(-self.log_alpha[tids] * (logp.detach() + self.target_entropy), tids, T)
        alpha_loss = alpha_task.sum()
        with torch.autocast(device_type=obs.device.type, enabled=False):  # e.g. CAMRL's regulariser: float32
            extra = self.extra_loss() if self.extra_loss is not None else None
        global_actor, global_alpha = self._mean(actor_task, alpha_task)  # over the learners (surgery's are already)
        if not (torch.isfinite(global_actor).all() and torch.isfinite(global_alpha).all()
                and (extra is None or torch.isfinite(extra))):
            self.actor_opt.zero_grad(set_to_none=True)
            self._skip("actor/alpha")
            return
        if not surgery:
            total = actor_task.mean() if extra is None else actor_task.mean() + extra
            total.backward(inputs=list(self.actor.parameters()))  # no critic weight grads
            self._sync_grads(self.actor.parameters())
        elif extra is not None:
            extra.backward(inputs=list(self.actor.parameters()))
        if extra is not None:
            out["loss/extra"] = float(extra.detach())
        self.actor_opt.step()
        if self.actor_avg is not None:
            _polyak_(self.actor_avg, self.actor, self.cfg.actor_ema)
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self._sync_grads([self.log_alpha])
        self.alpha_opt.step()
        if self.cfg.alpha_min > 0.0:  # the temperature floor (see the module docstring)
            with torch.no_grad():
                self.log_alpha.clamp_(min=math.log(self.cfg.alpha_min))
        out["loss/actor"] = global_actor
        out["loss/alpha"] = global_alpha
        out["sac/entropy"] = self._mean(per_task_mean(-logp.detach(), tids, T)[0])[0]


def _polyak_(avg: torch.nn.Module, src: torch.nn.Module, rate: float) -> None:
    """Polyak averaging in place: theta_avg <- (1 - rate) theta_avg + rate theta (the target
    critics with rate tau; the evaluation actor with ``actor_ema``)."""
    with torch.no_grad():
        torch._foreach_lerp_(list(avg.parameters()), list(src.parameters()), rate)


def _to_numpy(out: dict[str, Any]) -> dict[str, Any]:
    """The tensors among ``out``'s values as float32 numpy arrays, read back in one copy (one wait
    for a GPU learner instead of one per statistic)."""
    keys = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
    if not keys:
        return out
    flat = torch.cat([out[k].detach().reshape(-1).float() for k in keys]).cpu().numpy()
    off = 0
    for k in keys:
        n = out[k].numel()
        out[k] = flat[off:off + n].reshape(out[k].shape)
        off += n
    return out


def _prefixed(loss: str, stats: dict[str, Any]) -> dict[str, Any]:
    """``surgery/x`` -> ``surgery/<loss>/x``; diagnostics under ``_diagnostics/<loss>``."""
    out: dict[str, Any] = {}
    for k, v in stats.items():
        if k == "_diagnostics":
            out[f"_diagnostics/{loss}"] = v
        else:
            out[k.replace("surgery/", f"surgery/{loss}/", 1)] = v
    return out
