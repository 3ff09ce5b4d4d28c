"""Policy and value networks for multi-task agents.

Two variants, chosen by ``heads``:

- ``single``: one MLP whose input already holds the one-hot task id (Yu et al. 2019, MT-SAC /
  MT-PPO baselines), one output head shared by all tasks.
- ``multi``: a shared trunk and one output head per task; the head is picked by task id
  (the "multi-head" baseline of the Meta-World papers).
- ``ensemble``: nothing shared: one actor and one critic per task, stored as batched weights
  with a leading task axis (``[T, in, out]``), so cross-task terms on the per-task parameters
  (CAMRL's transfer regulariser) are tensor algebra on :meth:`ActorCritic.task_matrix`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal
from torch.nn import functional as F

from mtrl.layout import is_one_task_per_call, is_task_major


def mlp(in_dim: int, hidden: Sequence[int], act: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """An MLP trunk ``in_dim -> hidden[0] -> ... -> hidden[-1]`` with ``act`` after each layer."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), act()]
        d = h
    return nn.Sequential(*layers)


class TaskLinear(nn.Module):
    """``T`` independent linear layers as one ``[T, in, out]`` weight; row i uses its task's layer.

    A task-major batch with equal counts per task (MT-SAC's replay batches) is one ``baddbmm``;
    other batches are sorted by task and go through one GEMM per task present, with the weight
    split once by ``unbind`` (indexing ``weight[t]`` per task would allocate a full-size zero
    gradient per task in backward). Gathering a weight matrix per row would copy ``in x out``
    floats for every row.
    """

    task_specific = True

    def __init__(self, in_dim: int, out_dim: int, num_tasks: int, gain: float = float(np.sqrt(2))):
        super().__init__()
        w = torch.empty(num_tasks, out_dim, in_dim)
        for k in range(num_tasks):
            nn.init.orthogonal_(w[k], gain)
        self.weight = nn.Parameter(w.transpose(1, 2).contiguous())
        self.bias = nn.Parameter(torch.zeros(num_tasks, out_dim))

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        T, n = self.weight.shape[0], x.shape[0]
        if is_one_task_per_call():  # surgery's vmap: one task's rows, its own layer
            t = task_ids[:1]  # a 1-element index: a 0-d one would need .item(), which vmap refuses
            return torch.addmm(self.bias[t][0], x, self.weight[t][0])
        if is_task_major(task_ids, T):
            y = torch.baddbmm(self.bias[:, None, :], x.view(T, n // T, -1), self.weight)
            return y.reshape(n, -1)
        order = torch.argsort(task_ids, stable=True)
        counts = torch.bincount(task_ids, minlength=T).tolist()
        weights, biases = self.weight.unbind(0), self.bias.unbind(0)
        parts = [torch.addmm(biases[t], xs, weights[t])
                 for t, xs in enumerate(x[order].split(counts)) if counts[t]]
        out = torch.empty(n, self.weight.shape[2], dtype=x.dtype, device=x.device)
        out[order] = torch.cat(parts)
        return out


class TaskMLP(nn.Module):
    """One MLP per task (:class:`TaskLinear` layers, ``act`` after each).

    ``layer_norm``: each layer's pre-activation is layer-normalised, ``(z - mean(z)) / std(z)``
    over its units, as in the LayerNorm critics of RLPD (Ball et al. 2023, arXiv 2302.02948) and
    BRO (arXiv 2405.16158), but without their learned per-unit scale and shift (a choice: it keeps
    the per-task layers one batched weight and bias each; a positive scale would be absorbed by
    the next layer, a shift before the ReLU would not, so this is a slightly smaller family)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], num_tasks: int, act: type[nn.Module] = nn.Tanh,
                 layer_norm: bool = False):
        super().__init__()
        dims = [in_dim, *hidden]
        self.layers = nn.ModuleList(TaskLinear(a, b, num_tasks) for a, b in zip(dims[:-1], dims[1:]))
        self.act = act()
        self.layer_norm = layer_norm

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            z = layer(x, task_ids)
            x = self.act(F.layer_norm(z, z.shape[-1:]) if self.layer_norm else z)
        return x


class TaskHeads(nn.Module):
    """A linear output layer, either shared (``num_heads=1``) or one per task.

    All heads are one ``[in, H * out]`` matrix: the batch goes through every head in one GEMM
    and each row keeps its own task's slice (cheaper than gathering a weight matrix per row
    when ``out`` is small, as for values and actions).
    """

    def __init__(self, in_dim: int, out_dim: int, num_heads: int, gain: float = 1.0):
        super().__init__()
        self.num_heads, self.out_dim = num_heads, out_dim
        w = torch.empty(num_heads, out_dim, in_dim)
        for k in range(num_heads):
            nn.init.orthogonal_(w[k], gain)
        self.weight = nn.Parameter(w.reshape(num_heads * out_dim, in_dim).T.contiguous())
        self.bias = nn.Parameter(torch.zeros(num_heads * out_dim))
        self.task_specific = num_heads > 1  # gradient surgery: each task updates only its head

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        y = torch.addmm(self.bias, x, self.weight)
        if self.num_heads == 1:
            return y
        y = y.view(x.shape[0], self.num_heads, self.out_dim)
        return y[torch.arange(x.shape[0], device=x.device), task_ids]

    def head_params(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight ``[in, out]`` and bias of one task's head (views)."""
        k = task if self.num_heads > 1 else 0
        sl = slice(k * self.out_dim, (k + 1) * self.out_dim)
        return self.weight[:, sl], self.bias[sl]


class MiniGridCNN(nn.Module):
    """MiniGrid's egocentric 7x7 view as an image through a small CNN (the encoder of the
    rl-starter-files / torch-ac MiniGrid baselines, Willems et al.): conv 2x2 (16), ReLU, max-pool
    2x2, conv 2x2 (32), ReLU, conv 2x2 (64), ReLU -> 64 features. mtrl's MiniGrid observation
    starts with the view as one-hot cells laid out ``[7, 7, C]`` row-major (C = 20), so the
    image is a reshape of it; the rest of the row (direction one-hot, task one-hot) is appended
    to the CNN features: ``out_dim = 64 + obs_dim - 7 * 7 * C``."""

    def __init__(self, obs_dim: int, channels: int = 20):
        super().__init__()
        self.channels, self.img = channels, 7 * 7 * channels
        if obs_dim < self.img:
            raise ValueError(f"obs: image needs MiniGrid observations (at least {self.img} wide), got {obs_dim}")
        self.conv = nn.Sequential(nn.Conv2d(channels, 16, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 2),
                                  nn.ReLU(), nn.Conv2d(32, 64, 2), nn.ReLU(), nn.Flatten())
        self.out_dim = 64 + obs_dim - self.img

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-1]
        img = obs[..., : self.img].reshape(-1, 7, 7, self.channels).permute(0, 3, 1, 2)
        feats = self.conv(img).reshape(*lead, 64)
        return torch.cat([feats, obs[..., self.img:]], -1)


class ActorCritic(nn.Module):
    """PPO actor and critic with separate trunks; discrete (Categorical) or continuous (Gaussian).

    Continuous actions use a state-independent log standard deviation (one per task with
    ``heads: multi``) and are clipped to the action bounds by the env, not squashed.
    """

    def __init__(self, obs_dim: int, num_tasks: int, action_space: gym.Space,
                 hidden: Sequence[int] = (64, 64), heads: str = "single", encoder: str = "flat",
                 arch: str = "mlp", arch_args: dict | None = None):
        super().__init__()
        from mtrl.agents import archs

        heads = archs.heads_for(arch, heads)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.encoders: nn.ModuleList | None = None  # (actor, critic) image encoders for ``obs: image``
        if encoder == "cnn":
            if heads == "ensemble":
                raise ValueError("obs: image has no per-task (ensemble) form; use ppo.heads single or multi")
            self.encoders = nn.ModuleList(MiniGridCNN(obs_dim) for _ in range(2))
            obs_dim = self.encoders[0].out_dim
        elif encoder != "flat":
            raise ValueError(f"unknown encoder {encoder!r}; valid: 'flat', 'cnn'")
        act_dim = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        n_heads = num_tasks if heads in ("multi", "ensemble") else 1
        self.ensemble = heads == "ensemble"
        self.num_tasks = num_tasks
        if self.ensemble:
            self.actor_trunk: nn.Module = TaskMLP(obs_dim, hidden, num_tasks)
            self.critic_trunk: nn.Module = TaskMLP(obs_dim, hidden, num_tasks)
        else:
            self.actor_trunk = archs.build(arch, obs_dim, hidden, num_tasks, nn.Tanh, **(arch_args or {}))
            self.critic_trunk = archs.build(arch, obs_dim, hidden, num_tasks, nn.Tanh, **(arch_args or {}))
            for m in [*self.actor_trunk.modules(), *self.critic_trunk.modules()]:
                if isinstance(m, nn.Linear):  # the PPO implementation detail of orthogonal init (Engstrom et al. 2020)
                    nn.init.orthogonal_(m.weight, np.sqrt(2))
                    nn.init.zeros_(m.bias)
        feat = hidden[-1] if self.ensemble else self.actor_trunk.out_dim
        self.actor_head = TaskHeads(feat, act_dim, n_heads, gain=0.01)
        self.critic_head = TaskHeads(feat, 1, n_heads, gain=1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((n_heads, act_dim), -0.5))
            self.task_specific_params = ("log_std",) if n_heads > 1 else ()

    def _trunk(self, trunk: nn.Module, obs: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        return trunk(obs, task_ids)

    @property
    def has_task_matrix(self) -> bool:
        """Whether each task has parameters of its own: per-task networks or per-task heads."""
        return self.ensemble or self.actor_head.num_heads > 1

    def task_matrix(self) -> torch.Tensor:
        """``[T, P]``: each task's own parameters, flattened: with ``heads: ensemble`` its whole actor
        and critic; with ``heads: multi`` its actor and critic output layers (and log std)."""
        if not self.has_task_matrix:
            raise ValueError("task_matrix() needs per-task parameters: heads='ensemble' or 'multi'")
        T = self.num_tasks
        parts = []
        for trunk in ((self.actor_trunk, self.critic_trunk) if self.ensemble else ()):
            for layer in trunk.layers:
                parts += [layer.weight.reshape(T, -1), layer.bias]
        for head in (self.actor_head, self.critic_head):
            parts += [head.weight.view(head.weight.shape[0], T, -1).transpose(0, 1).reshape(T, -1),
                      head.bias.view(T, -1)]
        if not self.discrete:
            parts.append(self.log_std)
        return torch.cat(parts, 1)

    def last_layer(self) -> torch.Tensor:
        """``[T, in * out]``: each task's actor output layer (task similarity in CAMRL)."""
        h = self.actor_head
        return h.weight.view(h.weight.shape[0], self.num_tasks, -1).transpose(0, 1).reshape(self.num_tasks, -1)

    def forward(self, obs: torch.Tensor, task_ids: torch.Tensor, actions: torch.Tensor):
        """``(log pi(a|s), entropy, V(s))`` per row: the training-time evaluation of a batch."""
        logp, ent = self.log_prob_entropy(self.dist(obs, task_ids), actions)
        return logp, ent, self.value(obs, task_ids)

    def value(self, obs: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """State value ``V(s)`` per row, shape ``[B]``."""
        if self.encoders is not None:
            obs = self.encoders[1](obs)
        return self.critic_head(self._trunk(self.critic_trunk, obs, task_ids), task_ids).squeeze(-1)

    def dist(self, obs: torch.Tensor, task_ids: torch.Tensor):
        """Action distribution per row."""
        if self.encoders is not None:
            obs = self.encoders[0](obs)
        out = self.actor_head(self._trunk(self.actor_trunk, obs, task_ids), task_ids)
        if self.discrete:
            return Categorical(logits=out)
        log_std = self.log_std[0] if self.log_std.shape[0] == 1 else self.log_std[task_ids]
        return Normal(out, log_std.exp().expand_as(out))

    def log_prob_entropy(self, dist, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy per row (summed over action dims when continuous)."""
        if self.discrete:
            return dist.log_prob(actions.long()), dist.entropy()
        return dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, task_ids: torch.Tensor, generator: torch.Generator | None = None,
            deterministic: bool = False):
        """Sample actions for a batch; returns ``(actions, log_probs, values)``.

        The hot path of every runner: computed from logits / means directly rather than via
        ``torch.distributions`` (whose construction and argument checks cost more than the
        two small MLPs); :meth:`dist` gives the same probabilities for training.
        """
        x = obs if self.encoders is None else self.encoders[0](obs)
        out = self.actor_head(self._trunk(self.actor_trunk, x, task_ids), task_ids)
        value = self.value(obs, task_ids)
        if self.discrete:
            logp_all = torch.log_softmax(out, -1)
            if deterministic:
                a = logp_all.argmax(-1)
            else:
                a = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(-1)
            return a, logp_all.gather(-1, a[:, None]).squeeze(-1), value
        log_std = self.log_std[0] if self.log_std.shape[0] == 1 else self.log_std[task_ids]
        log_std = log_std.expand_as(out)
        if deterministic:
            a = out
            noise = torch.zeros_like(out)
        else:
            noise = torch.randn(out.shape, generator=generator)
            a = out + log_std.exp() * noise
        logp = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return a, logp, value


class OptionActorCritic(nn.Module):
    """A two-level option policy for option envs (``options: K``), the policy of MH-AIRL
    (Chen et al. 2023) and of hierarchical PPO on the extended MDP:

        pi(z_t, a_t | s_t, z_{t-1}) = pi_H(z_t | s_t, z_{t-1}) pi_L(a_t | s_t, z_t)

    The observation is ``[task obs | task one-hot | one-hot z_{t-1} (K + 1)]`` (the env writes
    the previous option); an action row is ``(z_t, a_t)`` packed as the env expects. pi_H is an
    MLP on the whole observation; pi_L an MLP on the observation without z_{t-1}, plus one-hot
    z_t; V(s_t, z_{t-1}) an MLP on the whole observation (the extended state's value). The
    entropy is H(pi_H) + H(pi_L(. | z_t)) for the sampled z_t (an estimate of the joint entropy).
    """

    def __init__(self, obs_dim: int, num_tasks: int, action_space: gym.Space, hidden: Sequence[int] = (64, 64),
                 options: int = 4, heads: str = "options"):
        super().__init__()
        self.K = options
        space = action_space
        if isinstance(space, gym.spaces.MultiDiscrete):
            self.discrete, act_dim = True, int(space.nvec[1])
        elif isinstance(space, gym.spaces.Box):
            self.discrete, act_dim = False, int(np.prod(space.shape)) - 1
        else:
            raise ValueError(f"an option policy needs an option env's action space, got {space}")
        self.ensemble = False
        self.base_dim = obs_dim - (options + 1)
        self.high = nn.Sequential(mlp(obs_dim, hidden), nn.Linear(hidden[-1], options))
        self.low = nn.Sequential(mlp(self.base_dim + options, hidden), nn.Linear(hidden[-1], act_dim))
        self.critic = nn.Sequential(mlp(obs_dim, hidden), nn.Linear(hidden[-1], 1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight, np.sqrt(2))
                nn.init.zeros_(m.bias)
        nn.init.orthogonal_(self.high[-1].weight, 0.01)
        nn.init.orthogonal_(self.low[-1].weight, 0.01)
        nn.init.orthogonal_(self.critic[-1].weight, 1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((options, act_dim), -0.5))

    def high_logp(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, K]``: log pi_H(z | s, z_prev) for every z."""
        return torch.log_softmax(self.high(obs), -1)

    def low_out(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Action logits (discrete) or means (continuous) of pi_L(. | s, z)."""
        onehot = torch.eye(self.K, dtype=obs.dtype, device=obs.device)[z.long()]  # (vmap-safe, unlike F.one_hot)
        x = torch.cat([obs[:, :self.base_dim], onehot], -1)
        return self.low(x)

    def low_logp_entropy(self, obs: torch.Tensor, z: torch.Tensor, a: torch.Tensor):
        out = self.low_out(obs, z)
        if self.discrete:
            logp_all = torch.log_softmax(out, -1)
            return logp_all.gather(-1, a.long()[:, None]).squeeze(-1), -(logp_all.exp() * logp_all).sum(-1)
        log_std = self.log_std[z.long()]
        dist = Normal(out, log_std.exp())
        return dist.log_prob(a).sum(-1), dist.entropy().sum(-1)

    def _split(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = actions[:, 0].round().long().clamp(0, self.K - 1)
        return z, (actions[:, 1] if self.discrete else actions[:, 1:])

    def forward(self, obs: torch.Tensor, task_ids: torch.Tensor, actions: torch.Tensor):
        """``(log pi(z, a | s, z_prev), entropy estimate, V(s, z_prev))`` per row."""
        z, a = self._split(actions)
        hl = self.high_logp(obs)
        lp_low, ent_low = self.low_logp_entropy(obs, z, a)
        ent_high = -(hl.exp() * hl).sum(-1)
        return hl.gather(-1, z[:, None]).squeeze(-1) + lp_low, ent_high + ent_low, self.value(obs, task_ids)

    def value(self, obs: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, task_ids: torch.Tensor, generator: torch.Generator | None = None,
            deterministic: bool = False):
        """Sample ``z ~ pi_H``, then ``a ~ pi_L(. | z)``; returns packed ``(z, a)``, joint log-prob, value."""
        hl = self.high_logp(obs)
        z = hl.argmax(-1) if deterministic else torch.multinomial(hl.exp(), 1, generator=generator).squeeze(-1)
        out = self.low_out(obs, z)
        if self.discrete:
            ll = torch.log_softmax(out, -1)
            a = ll.argmax(-1) if deterministic else torch.multinomial(ll.exp(), 1, generator=generator).squeeze(-1)
            logp = hl.gather(-1, z[:, None]).squeeze(-1) + ll.gather(-1, a[:, None]).squeeze(-1)
            packed = torch.stack([z, a], -1)
        else:
            log_std = self.log_std[z]
            noise = torch.zeros_like(out) if deterministic else torch.randn(out.shape, generator=generator)
            a = out + log_std.exp() * noise
            logp = hl.gather(-1, z[:, None]).squeeze(-1) + (
                -0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
            packed = torch.cat([z[:, None].to(a.dtype), a], -1)
        return packed, logp, self.value(obs, task_ids)
