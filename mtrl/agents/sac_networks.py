"""MT-SAC networks: a tanh-Gaussian actor and twin Q critics, single head, one head per task, or
(``heads: ensemble``) one whole network per task, stored as batched ``[T, ...]`` weights.

The twin critics are two plain ``nn.Linear`` stacks. An "ensemble" layout (weights
``[2, in, out]``, one ``baddbmm`` per layer for both critics) was tried first: on CPU it was
slower (MT10 size, 2 threads: forward + backward 43 ms vs 31 ms) and its vmapped per-task
gradients cost 1.23x a backward vs 1.15x for the plain stacks (``benchmarks/speed_surgery.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mtrl.agents import archs
from mtrl.agents.networks import TaskHeads, TaskMLP
from mtrl.agents.precision import fp32

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class TaskEmbedding(nn.Module):
    """A learned unit-norm embedding per task, appended to the input: ``[x, e_t / ||e_t||]``
    (BRC, Nauman et al. 2025: a 32-d normalised task embedding fed to actor and critic, next to
    whatever the observation already holds; mtrl keeps the one-hot in the observation).
    Row t is task t's own parameter (``task_specific``: surgery gives it task t's gradient only)."""

    task_specific = True

    def __init__(self, num_tasks: int, dim: int):
        super().__init__()
        self.table = nn.Parameter(torch.randn(num_tasks, dim) / math.sqrt(dim))

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        e = self.table[task_ids]
        return torch.cat([x, e / e.norm(dim=-1, keepdim=True).clamp_min(1e-6)], -1)


class BroNet(nn.Module):
    """BroNet trunk (Nauman et al. 2024, "Bigger, Regularized, Optimistic", arXiv 2405.16158):

    ``h = ReLU(LN(W_0 x))``, then per block ``h <- h + LN(W_2 ReLU(LN(W_1 h)))``.
    LayerNorm keeps wide critics stable at high update-to-data ratios; the width is set apart
    from the actor's (``sac.critic_width``)."""

    def __init__(self, in_dim: int, width: int, blocks: int):
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(in_dim, width), nn.LayerNorm(width), nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width), nn.ReLU(), nn.Linear(width, width),
                          nn.LayerNorm(width)) for _ in range(blocks))
        self.out_dim = width

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return h


def two_hot(y: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """``[..., bins]`` probabilities on the evenly spaced ``support`` whose mean is ``y`` (clipped to
    the support): mass ``1 - f`` on the bin below y and ``f`` on the bin above, f the fraction of
    the way between them (Farebrother et al. 2024, "Stop Regressing", arXiv 2403.03950; the
    categorical projection of a point target in C51, Bellemare et al. 2017)."""
    lo_v, hi_v, n = support[0], support[-1], support.numel()
    x = (y.clamp(lo_v, hi_v) - lo_v) / (hi_v - lo_v) * (n - 1)
    lo = x.floor().clamp(0, n - 2)
    frac = (x - lo).unsqueeze(-1)
    idx = lo.long().unsqueeze(-1)
    out = torch.zeros(*y.shape, n, dtype=y.dtype, device=y.device)
    return out.scatter(-1, idx, 1 - frac).scatter_add(-1, idx + 1, frac)


class TwinQ(nn.Module):
    """Two Q networks ``Q_k(s, a)``, k = 1, 2; returns ``[2, B]``. With ``heads="multi"`` each has
    one output per task (flagged task-specific for gradient surgery) and picks its task's.

    ``arch``: ``mlp`` (ReLU layers of ``hidden``) or ``bronet`` (:class:`BroNet`, ``width`` x
    ``blocks``). ``bins > 1`` makes a categorical critic: each Q is a softmax over ``bins`` logits
    on an even support in ``[v_min, v_max]`` and ``Q = sum_i p_i z_i``; ``forward(...,
    logits=True)`` returns the ``[2, B, bins]`` logits for the cross-entropy loss.
    ``task_embedding > 0`` appends a learned task embedding to the input. ``layer_norm`` (``mlp``
    only) normalises each hidden layer's pre-activation (RLPD, Ball et al. 2023)."""

    def __init__(self, obs_dim: int, act_dim: int, num_tasks: int, hidden: Sequence[int], heads: str,
                 arch: str = "mlp", width: int = 512, blocks: int = 2, bins: int = 1, v_min: float = -10.0,
                 v_max: float = 10.0, task_embedding: int = 0, trunk: str = "mlp", trunk_args: dict | None = None,
                 layer_norm: bool = False):
        super().__init__()
        in_dim = obs_dim + act_dim + task_embedding
        self.embed = TaskEmbedding(num_tasks, task_embedding) if task_embedding else None
        heads = archs.heads_for(trunk, heads)
        self.num_heads = num_tasks if heads in ("multi", "ensemble") else 1
        self.ensemble = heads == "ensemble"
        self.bins = bins
        if arch == "bronet":
            if layer_norm:
                raise ValueError("sac.critic_layer_norm is for sac.critic=mlp; bronet has its own LayerNorms")
            if self.ensemble:
                raise ValueError("sac.critic=bronet has no per-task (ensemble) form; use heads single or multi")
            self.bodies = nn.ModuleList(BroNet(in_dim, width, blocks) for _ in range(2))
            feat = width
        elif arch == "mlp":
            self.bodies = nn.ModuleList((TaskMLP(in_dim, hidden, num_tasks, nn.ReLU, layer_norm) if self.ensemble
                                         else archs.build(trunk, in_dim, hidden, num_tasks, nn.ReLU, layer_norm,
                                                          **(trunk_args or {}))) for _ in range(2))
            feat = self.bodies[0].out_dim if not self.ensemble else (hidden[-1] if hidden else in_dim)
        else:
            raise ValueError(f"unknown sac.critic {arch!r}; valid: 'mlp', 'bronet'")
        self.heads = nn.ModuleList(nn.Linear(feat, self.num_heads * bins) for _ in range(2))
        for h in self.heads:
            h.task_specific = self.num_heads > 1
        if bins > 1:
            self.register_buffer("support", torch.linspace(v_min, v_max, bins))

    def forward(self, obs: torch.Tensor, act: torch.Tensor, task_ids: torch.Tensor,
                logits: bool = False) -> torch.Tensor:
        x = torch.cat([obs, act], -1)
        if self.embed is not None:
            x = self.embed(x, task_ids)
        out = torch.stack([fp32(head, body(x, task_ids)) for body, head in zip(self.bodies, self.heads)])  # [2, B, heads * bins]
        out = out.view(2, -1, self.num_heads, self.bins)
        if self.num_heads == 1:
            out = out[:, :, 0]
        else:
            out = out.gather(2, task_ids.view(1, -1, 1, 1).expand(2, -1, 1, self.bins)).squeeze(2)
        if self.bins == 1:
            return out.squeeze(-1)  # [2, B]
        if logits:
            return out  # [2, B, bins]
        return (out.softmax(-1) * self.support).sum(-1)


def upgrade_ensemble_critic(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a checkpoint of the earlier ensemble TwinQ (``layers.i.weight [2, in, out]``,
    ``layers.i.bias [2, 1, out]``, ``head.weight [2, in, heads]``, ``head.bias [2, 1, heads]``,
    computing ``x W + b``) to the two ``nn.Linear`` stacks (``W^T``, ``b``). Same function;
    already-current state dicts pass through unchanged."""
    if "head.weight" not in sd:
        return sd
    out: dict[str, torch.Tensor] = {}
    n_layers = sum(1 for k in sd if k.startswith("layers.") and k.endswith(".weight"))
    for k in range(2):
        for i in range(n_layers):
            out[f"bodies.{k}.{2 * i}.weight"] = sd[f"layers.{i}.weight"][k].T.contiguous()
            out[f"bodies.{k}.{2 * i}.bias"] = sd[f"layers.{i}.bias"][k, 0].clone()
        out[f"heads.{k}.weight"] = sd["head.weight"][k].T.contiguous()
        out[f"heads.{k}.bias"] = sd["head.bias"][k, 0].clone()
    return out


def upgrade_ensemble_critic_opt(opt_sd: dict, names: list[str]) -> dict:
    """The critic optimiser's state for :func:`upgrade_ensemble_critic`: Adam's moments are
    mapped like the parameters and re-indexed in the order of ``names`` (the new critic's
    ``named_parameters``). Old order: ``layers.0.weight, layers.0.bias, ..., head.weight, head.bias``."""
    group = opt_sd["param_groups"][0]
    n_old = len(group["params"])
    if n_old == len(names):
        return opt_sd
    old_names = [f"layers.{i}.{p}" for i in range((n_old - 2) // 2) for p in ("weight", "bias")] + ["head.weight", "head.bias"]
    old_state = {old_names[group["params"].index(idx)]: st for idx, st in opt_sd["state"].items()}
    state: dict[int, dict] = {}
    if old_state:
        keys = [k for k, v in next(iter(old_state.values())).items() if torch.is_tensor(v) and v.dim() > 0]
        moved = {k: upgrade_ensemble_critic({n: st[k] for n, st in old_state.items()}) for k in keys}
        for i, n in enumerate(names):
            # scalars (Adam's ``step``) copied per parameter: Adam increments them in place
            state[i] = {**{k: (v.clone() if torch.is_tensor(v) else v) for k, v in old_state["head.weight"].items()
                           if k not in keys}, **{k: moved[k][n] for k in keys}}
    return {"state": state, "param_groups": [{**group, "params": list(range(len(names)))}]}


class TanhGaussianActor(nn.Module):
    """``a = tanh(mu + sigma * eps)`` with the log-density corrected for the tanh squashing:

    ``log pi(a|s) = sum_j [log N(u_j; mu_j, sigma_j) - log(1 - tanh(u_j)^2)]`` (Haarnoja et al.
    2018, appendix C), with ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))`` for stability.
    ``log sigma`` is squashed into [LOG_STD_MIN, LOG_STD_MAX] by a tanh.
    """

    kind = "sac"

    def __init__(self, obs_dim: int, num_tasks: int, act_dim: int, hidden: Sequence[int] = (400, 400, 400),
                 heads: str = "single", task_embedding: int = 0, arch: str = "mlp", arch_args: dict | None = None,
                 **_: object):
        super().__init__()
        heads = archs.heads_for(arch, heads)
        self.ensemble = heads == "ensemble"
        self.num_tasks = num_tasks
        self.embed = TaskEmbedding(num_tasks, task_embedding) if task_embedding else None
        obs_dim += task_embedding
        if self.ensemble:
            self.trunk: nn.Module = TaskMLP(obs_dim, hidden, num_tasks, nn.ReLU)
            d = hidden[-1] if hidden else obs_dim
        else:
            self.trunk = archs.build(arch, obs_dim, hidden, num_tasks, nn.ReLU, **(arch_args or {}))
            d = self.trunk.out_dim
        self.head = TaskHeads(d, 2 * act_dim, num_tasks if heads in ("multi", "ensemble") else 1, gain=1.0)
        self.act_dim = act_dim

    def task_matrix(self) -> torch.Tensor:
        """``[T, P]``: every parameter of each task's actor, flattened (``ensemble`` only)."""
        if not self.ensemble:
            raise ValueError("task_matrix() needs heads='ensemble' (per-task networks)")
        T = self.num_tasks
        parts = []
        for layer in self.trunk.layers:
            parts += [layer.weight.reshape(T, -1), layer.bias]
        h = self.head
        parts += [h.weight.view(h.weight.shape[0], T, -1).transpose(0, 1).reshape(T, -1), h.bias.view(T, -1)]
        return torch.cat(parts, 1)

    def last_layer(self) -> torch.Tensor:
        """``[T, in * out]``: each task's output layer."""
        h = self.head
        return h.weight.view(h.weight.shape[0], self.num_tasks, -1).transpose(0, 1).reshape(self.num_tasks, -1)

    def forward(self, obs: torch.Tensor, task_ids: torch.Tensor, generator: torch.Generator | None = None,
                deterministic: bool = False, eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``(action, log_prob)``; deterministic gives ``tanh(mu)`` and its log-density.

        ``eps`` (standard normal noise) may be given, e.g. to vmap the actor over tasks.
        """
        if self.embed is not None:
            obs = self.embed(obs, task_ids)
        feats = self.trunk(obs, task_ids)
        mu, log_std = fp32(self.head, feats, task_ids).chunk(2, -1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        if eps is None:
            # drawn on the CPU (the learners' generators are CPU ones), so a GPU run draws the same noise
            eps = torch.zeros_like(mu) if deterministic else torch.randn(mu.shape, generator=generator).to(mu.device)
        u = mu + log_std.exp() * eps
        a = torch.tanh(u)
        logp = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return a, logp

    @torch.no_grad()
    def act(self, obs: torch.Tensor, task_ids: torch.Tensor, generator: torch.Generator | None = None,
            deterministic: bool = False):
        """Runner interface: ``(actions, log_probs, None)``."""
        a, logp = self.forward(obs, task_ids, generator, deterministic)
        return a, logp, None
