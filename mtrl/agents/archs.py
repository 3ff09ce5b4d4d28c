"""Multi-task network trunks, selected by name (``sac.arch``, ``ppo.arch``).

A trunk maps ``(x, task_ids) -> features [B, out_dim]``; the agent puts its output heads (one
shared or one per task, ``heads``) on top. MT-SAC's actor and MLP critics and MT-PPO's actor and
critic all build their trunk here, so every architecture composes with every surgery method and
curriculum. Per-task parameters live in modules flagged ``task_specific = True``
(:class:`TaskTable`, :class:`TaskLoRA`): gradient surgery gives each of their rows its own task's
gradient only (:func:`mtrl.surgery.apply.task_specific_names`) and aggregates the shared ones,
with no case for any architecture in the learners.

Every trunk runs under ``torch.func.vmap`` over tasks (the per-task gradients of surgery): per-task
parameters are gathered by ``task_ids``; PaCo's composed path (and MT-SAC's per-task layers) branch
on the batch's layout outside vmap and, inside it, rely on :func:`mtrl.layout.one_task_per_call`,
which :func:`mtrl.surgery.jacobian.per_task_grads` sets (``compose=False`` needs neither).
The input ``x`` keeps the task one-hot the environment appends; architectures that encode the
task themselves (FiLM, SoftMod, CARE, MOORE, PaCo, LoRA) use their own task parameters on top.

==============  ====================================================================
``mlp``         one-hot-conditioned MLP (Yu et al. 2019, MT-SAC / MT-PPO baselines)
``multihead``   the same MLP with one output head per task (sets ``heads: multi``)
``film``        MLP whose every layer is scaled and shifted per task (FiLM, Perez et al. 2018)
``softmod``     Soft Modularization (Yang et al. 2020): routing network over module layers
``care``        CARE (Sodhani et al. 2021): mixture of encoders attended by a task-description context
``moore``       MOORE (Hendawi et al. 2024): Gram-Schmidt-orthogonalised experts mixed per task
``paco``        PaCo (Sun et al. 2022): each task's weights a combination of K shared parameter sets
``lora``        shared MLP with per-task low-rank adapters on each layer (LoRA, Hu et al. 2022)
==============  ====================================================================
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtrl.errors import MtrlError, choices, did_you_mean
from mtrl.layout import is_one_task_per_call, is_task_major


class TaskTable(nn.Module):
    """A ``[T, *shape]`` parameter, one row per task, gathered by task id (task-specific)."""

    task_specific = True

    def __init__(self, num_tasks: int, *shape: int, init: Callable[[torch.Tensor], object] | float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_tasks, *shape))
        if callable(init):
            init(self.weight)
        else:
            nn.init.constant_(self.weight, float(init))

    def forward(self, task_ids: torch.Tensor) -> torch.Tensor:
        return self.weight[task_ids]


def stacked_layers(k: int, dims: Sequence[int]) -> tuple[nn.ParameterList, nn.ParameterList]:
    """``k`` parallel linear layers per step of ``dims``: weights ``[k, in, out]`` and biases ``[k, out]``
    (``nn.Linear``'s default U(-1/sqrt(in), 1/sqrt(in)) initialisation), applied with one einsum."""
    ws, bs = nn.ParameterList(), nn.ParameterList()
    for a, b in zip(dims[:-1], dims[1:]):
        bound = 1 / math.sqrt(a)
        ws.append(nn.Parameter(torch.empty(k, a, b).uniform_(-bound, bound)))
        bs.append(nn.Parameter(torch.empty(k, b).uniform_(-bound, bound)))
    return ws, bs


class MLPTrunk(nn.Sequential):
    """``Linear -> act`` per entry of ``hidden``; task ids unused (the one-hot is in ``x``).

    A ``Sequential`` subclass so that its state-dict keys (``0.weight``, ...) are those of the
    plain MLP that earlier checkpoints hold."""

    def __init__(self, in_dim: int, hidden: Sequence[int], num_tasks: int = 1, act: type[nn.Module] = nn.ReLU,
                 layer_norm: bool = False):
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:  # layer_norm: Linear -> LayerNorm -> act (RLPD's critic, arXiv 2302.02948)
            layers += [nn.Linear(d, h), *([nn.LayerNorm(h)] if layer_norm else []), act()]
            d = h
        super().__init__(*layers)
        self.out_dim = d

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x)
        return x


class FiLMTrunk(nn.Module):
    """FiLM (Perez et al. 2018, "FiLM: Visual Reasoning with a General Conditioning Layer"): each
    layer's pre-activation is modulated per task,

        h_{l+1} = act(gamma_{l,t} * (W_l h_l + b_l) + beta_{l,t}),

    with ``gamma`` and ``beta`` learned per task (initialised to 1 and 0: the plain MLP)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], num_tasks: int, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        dims = [in_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.gamma = nn.ModuleList(TaskTable(num_tasks, h, init=1.0) for h in hidden)
        self.beta = nn.ModuleList(TaskTable(num_tasks, h, init=0.0) for h in hidden)
        self.act = act()
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        for layer, g, b in zip(self.layers, self.gamma, self.beta):
            x = self.act(g(task_ids) * layer(x) + b(task_ids))
        return x


class SoftModTrunk(nn.Module):
    """Soft Modularization (Yang et al. 2020, "Multi-Task Reinforcement Learning with Soft
    Modularization", NeurIPS). A state embedding ``f(s)`` and a task embedding ``h(z_t)`` (a
    learned row per task) drive a routing network that mixes ``layers`` layers of ``modules``
    modules of the base network:

        u = f(s) * h(z_t)
        p^1 = W_d^1 ReLU(u),    p^{l+1} = W_d^{l+1} ReLU(W_u^l softmax(p^l) * u)
        g_j^{l+1} = sum_i softmax(p^l)_{j,i} m_i^l(g^l),   m_i^l(g) = act(W_{l,i} g_i + b_{l,i})
        out = sum_j softmax(p^L)_j g_j^L

    where ``p^1 .. p^{L-1}`` are ``n x n`` matrices (softmax over the input modules i) and the
    last, ``p^L``, has ``n`` entries that weigh the last layer's modules (the paper's eq. 9);
    the first module layer reads ``f(s)``. ``layers >= 2`` (with one there is nothing to route).
    The task one-hot stays in ``x`` (the paper's ``f(s)`` reads the state alone)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], num_tasks: int, act: type[nn.Module] = nn.ReLU,
                 modules: int = 4, layers: int = 2, module_width: int | None = None):
        super().__init__()
        # default width: n modules of w^2 weights hold about as many as one h x h layer (w = h / sqrt(n))
        module_width = module_width or max(int((hidden[-1] if hidden else 256) / math.sqrt(max(modules, 1))), 8)
        if modules < 1 or layers < 2 or module_width < 1:
            raise ValueError(f"softmod needs modules >= 1, layers >= 2 and module_width >= 1, got {modules}, {layers}, "
                             f"{module_width}")
        d = hidden[0] if hidden else 256
        n = self.n = modules
        self.embed = nn.Sequential(nn.Linear(in_dim, d), act())
        self.task = TaskTable(num_tasks, d, init=lambda w: nn.init.normal_(w, 1.0, 0.1))
        self.route_down = nn.ModuleList(nn.Linear(d, n * n) for _ in range(layers - 1))
        self.route_up = nn.ModuleList(nn.Linear(n * n, d) for _ in range(layers - 1))
        self.route_out = nn.Linear(d, n)  # p^L: the weights of the last layer's modules
        # module weights of one layer as [n, in, out]: all modules in one batched matmul
        self.w, self.b = stacked_layers(n, [d] + [module_width] * layers)
        self.act = act()
        self.out_dim = module_width

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        f = self.embed(x)  # [B, D]
        u = f * self.task(task_ids)
        n = self.n
        g = self.act(torch.einsum("bd,ndo->bno", f, self.w[0]) + self.b[0])  # [B, n, w]: modules of layer 1
        probs = torch.empty(0)
        for i in range(1, len(self.w)):
            if i == 1:
                logits = self.route_down[0](torch.relu(u))
            else:
                logits = self.route_down[i - 1](torch.relu(self.route_up[i - 2](probs.flatten(1)) * u))
            probs = logits.view(-1, n, n).softmax(-1)  # [B, j (to), i (from)]
            mixed = torch.bmm(probs, g)  # [B, n, w]: module j's input
            g = self.act(torch.einsum("bnd,ndo->bno", mixed, self.w[i]) + self.b[i])
        last = self.route_out(torch.relu(self.route_up[-1](probs.flatten(1)) * u)).softmax(-1)  # [B, n]
        return (last.unsqueeze(-1) * g).sum(1)


class CARETrunk(nn.Module):
    """CARE (Sodhani et al. 2021, "Multi-Task Reinforcement Learning with Context-based
    Representations", ICML). ``experts`` encoders read the observation; a context encoder maps
    the task's description embedding ``e_t`` (:func:`mtrl.envs.descriptions.embed`, fixed) to
    ``z_ctx``, which attends over the encoders:

        z_ctx = MLP_ctx(e_t),   alpha = softmax(W_a z_ctx),   z_enc = sum_j alpha_j enc_j(s)

    and the trunk is an MLP (``hidden``) on ``[z_enc, z_ctx]``. The context encoder and
    attention are shared (they read descriptions, so related tasks share them). The encoders
    read the whole input, task one-hot included (the paper's read the state alone)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], num_tasks: int, act: type[nn.Module] = nn.ReLU,
                 descriptions: Sequence[str] = (), experts: int = 4, encoder_dim: int = 64, context_dim: int = 32,
                 embed_dim: int = 64):
        super().__init__()
        from mtrl.envs.descriptions import embed

        if len(descriptions) != num_tasks:
            raise ValueError(f"care needs one task description per task ({num_tasks}), got {len(descriptions)}")
        if experts < 1:
            raise ValueError(f"care needs experts >= 1, got {experts}")
        self.register_buffer("desc", torch.stack([torch.from_numpy(embed(d, embed_dim)) for d in descriptions]))
        width = hidden[0] if hidden else 128
        self.enc_w1 = nn.Parameter(torch.empty(experts, in_dim, width))
        self.enc_b1 = nn.Parameter(torch.zeros(experts, width))
        self.enc_w2 = nn.Parameter(torch.empty(experts, width, encoder_dim))
        self.enc_b2 = nn.Parameter(torch.zeros(experts, encoder_dim))
        for w in (self.enc_w1, self.enc_w2):
            for k in range(experts):
                nn.init.kaiming_uniform_(w.data[k].T, a=math.sqrt(5))
        self.context = nn.Sequential(nn.Linear(embed_dim, 64), act(), nn.Linear(64, context_dim))
        self.attend = nn.Linear(context_dim, experts)
        self.mlp = MLPTrunk(encoder_dim + context_dim, hidden[1:] or [width], act=act)
        self.act = act()
        self.out_dim = self.mlp.out_dim

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        z_ctx = self.context(self.desc[task_ids])  # [B, c]
        alpha = self.attend(z_ctx).softmax(-1)  # [B, k]
        h = self.act(torch.einsum("bi,kio->bko", x, self.enc_w1) + self.enc_b1)
        enc = torch.einsum("bki,kio->bko", h, self.enc_w2) + self.enc_b2  # [B, k, e]
        z_enc = (alpha.unsqueeze(-1) * enc).sum(1)
        return self.mlp(torch.cat([z_enc, z_ctx], -1))


def gram_schmidt(v: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Orthonormalise the ``k`` vectors along dim -2 of ``v [..., k, d]`` in order (classical
    Gram-Schmidt: ``u_j = (v_j - sum_{i<j} <v_j, u_i> u_i) / ||.||``); needs ``k <= d``."""
    us: list[torch.Tensor] = []
    for j in range(v.shape[-2]):
        w = v[..., j, :]
        for u in us:
            w = w - (w * u).sum(-1, keepdim=True) * u
        us.append(w / w.norm(dim=-1, keepdim=True).clamp_min(eps))
    return torch.stack(us, -2)


class MOORETrunk(nn.Module):
    """MOORE (Hendawi et al. 2024, "Multi-Task Reinforcement Learning with Mixture of Orthogonal
    Experts", ICLR). ``experts`` MLPs (``hidden`` each) map the state to ``k`` representations,
    orthonormalised per sample by Gram-Schmidt into ``U = [u_1 .. u_k]`` (a basis of a
    k-dimensional subspace), and each task mixes them with its own weights ``w_t`` (a task
    encoder, here one learned row per task):

        U = GS(h_1(s), ..., h_k(s)),   z = tanh(sum_j w_{t,j} u_j)

    The experts read the whole input, task one-hot included (the paper's read the state alone).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], num_tasks: int, act: type[nn.Module] = nn.ReLU,
                 experts: int = 4):
        super().__init__()
        if not hidden or experts < 1 or experts > hidden[-1]:
            raise ValueError(f"moore needs 1 <= experts <= the last hidden width, got {experts} and {list(hidden)}")
        dims = [in_dim, *hidden]
        self.w, self.b = stacked_layers(experts, dims)
        self.mix = TaskTable(num_tasks, experts, init=lambda w: nn.init.normal_(w, 0.0, 1.0 / math.sqrt(experts)))
        self.act = act()
        self.out_dim = hidden[-1]

    def experts(self, x: torch.Tensor) -> torch.Tensor:
        """The orthonormal expert representations ``U`` of a batch, ``[B, k, d]``."""
        h = torch.einsum("bi,kio->bko", x, self.w[0]) + self.b[0]
        for i in range(1, len(self.w)):
            h = torch.einsum("bki,kio->bko", self.act(h), self.w[i]) + self.b[i]
        return gram_schmidt(h)

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        return torch.tanh((self.mix(task_ids).unsqueeze(-1) * self.experts(x)).sum(1))


class PaCoTrunk(nn.Module):
    """PaCo (Sun et al. 2022, "PaCo: Parameter-Compositional Multi-Task Reinforcement Learning",
    NeurIPS). ``K`` parameter sets ``Phi = [phi_1 .. phi_K]`` of the whole MLP are shared; task t's
    network has the parameters ``theta_t = Phi w_t`` with a learned ``w_t in R^K``:

        W_t = sum_k w_{t,k} W_k,   b_t = sum_k w_{t,k} b_k,   h <- act(W_t h + b_t)

    ``compose=True`` (default) computes each task's ``(W_t, b_t)`` once per call (T small
    combinations) and runs every row through its task's layer: a task-major batch with equal
    counts (MT-SAC's replay batches) is one ``baddbmm``, any other batch one GEMM per task present,
    and inside surgery's vmapped per-task gradients (:func:`mtrl.layout.one_task_per_call`) one
    GEMM per task. That costs about one MLP's forward plus ``T x K`` weight combinations, where
    ``compose=False`` (the reference path) runs all K layers on every row and mixes the outputs,
    ``sum_k w_{t,k} (W_k h + b_k)``: the same function up to rounding, K times the GEMM work (under
    bfloat16 autocast the composed path's GEMMs run in bf16, as ``nn.Linear``'s do; the reference
    path's einsums stay in float32).

    (the task weights ``w_t`` start as independent N(0, 1/K) draws: E||w_t||^2 = 1, so the composed
    weights have the variance of one set's, and tasks start apart)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], num_tasks: int, act: type[nn.Module] = nn.ReLU,
                 sets: int = 5, compose: bool = True):
        super().__init__()
        if sets < 1:
            raise ValueError(f"paco needs sets >= 1, got {sets}")
        dims = [in_dim, *hidden]
        self.w, self.b = stacked_layers(sets, dims)
        self.comp = TaskTable(num_tasks, sets, init=lambda w: nn.init.normal_(w, 0.0, 1.0 / math.sqrt(sets)))
        self.act = act()
        self.out_dim = dims[-1]
        self.compose = bool(compose)

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        if not self.compose:
            return self._mixed(x, task_ids)
        if is_one_task_per_call():  # surgery's vmap: every row is the first row's task
            for w, b in self._composed(self.comp(task_ids[:1])[0]):  # [:1]: a 0-d index would need .item()
                x = self.act(torch.addmm(b, x, w))
            return x
        T, n = self.comp.weight.shape[0], x.shape[0]
        if is_task_major(task_ids, T):
            h = x.reshape(T, n // T, -1)
            for w, b in self._composed(self.comp.weight):
                h = self.act(torch.baddbmm(b.unsqueeze(1), h, w))
            return h.reshape(n, -1)
        if n == 0:
            return x.new_zeros(0, self.out_dim)
        order = torch.argsort(task_ids, stable=True)
        counts = torch.bincount(task_ids, minlength=T).tolist()  # one host read of the counts
        present = [t for t in range(T) if counts[t]]
        layers = self._composed(self.comp.weight[present])
        parts = []
        for j, h in enumerate(x[order].split([counts[t] for t in present])):
            for w, b in layers:
                h = self.act(torch.addmm(b[j], h, w[j]))
            parts.append(h)
        out = torch.empty(n, self.out_dim, dtype=parts[0].dtype, device=x.device)
        out[order] = torch.cat(parts)
        return out

    def _composed(self, c: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(W [..., in, out], b [..., out])`` per layer for composition weights ``c [..., K]``."""
        return [(torch.einsum("...k,kio->...io", c, w), c @ b) for w, b in zip(self.w, self.b)]

    def _mixed(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """The reference path: every row through all K layers, outputs mixed by its task's ``w_t``."""
        c = self.comp(task_ids)  # [B, K]
        for w, b in zip(self.w, self.b):
            y = torch.einsum("bi,kio->bko", x, w) + b  # [B, K, out]
            x = self.act((c.unsqueeze(-1) * y).sum(1))
        return x

    def task_weights(self, task: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Task ``task``'s composed ``(W [in, out], b)`` per layer: ``theta_t = Phi w_t``."""
        return self._composed(self.comp.weight[task])


class TaskLoRA(nn.Module):
    """Per-task low-rank update ``x A_t B_t`` of one ``in -> out`` layer (task-specific).

    All tasks' ``A`` are one ``[in, T r]`` matrix: ``x A`` is one GEMM, each row keeps its own
    task's ``r`` columns (a mask), and ``[T r, out]`` B maps them back, so no per-row weight is
    gathered (``T r`` is small)."""

    task_specific = True

    def __init__(self, in_dim: int, out_dim: int, num_tasks: int, rank: int, alpha: float):
        super().__init__()
        self.T, self.r, self.scale = num_tasks, rank, alpha / rank
        self.A = nn.Parameter(torch.randn(in_dim, num_tasks * rank) / math.sqrt(in_dim))
        self.B = nn.Parameter(torch.zeros(num_tasks * rank, out_dim))

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        tasks = torch.arange(self.T, device=x.device).repeat_interleave(self.r)
        mask = (task_ids.unsqueeze(-1) == tasks).to(x.dtype)  # [B, T r]: the row's own task's r columns
        return ((x @ self.A) * mask) @ self.B * self.scale


class LoRATrunk(nn.Module):
    """A shared MLP with a per-task low-rank adapter on every layer (LoRA, Hu et al. 2022; per-task
    adapters on a shared trunk as in the multi-task LoRA papers):

        h_{l+1} = act(W_l h_l + b_l + (alpha / r) h_l A_{l,t} B_{l,t})

    ``B`` starts at zero (the shared trunk at initialisation); ``rank: 0`` has no adapters."""

    def __init__(self, in_dim: int, hidden: Sequence[int], num_tasks: int, act: type[nn.Module] = nn.ReLU,
                 rank: int = 4, alpha: float | None = None):
        super().__init__()
        if rank < 0:
            raise ValueError(f"lora needs rank >= 0, got {rank}")
        dims = [in_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.adapters = nn.ModuleList(TaskLoRA(a, b, num_tasks, rank, float(alpha or rank))
                                      for a, b in zip(dims[:-1], dims[1:])) if rank > 0 else None
        self.act = act()
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            y = layer(x)
            if self.adapters is not None:
                y = y + self.adapters[i](x, task_ids)
            x = self.act(y)
        return x


@dataclass(frozen=True)
class Arch:
    """A registry entry: the trunk class, the heads it implies (None: the config's), and whether
    it needs task descriptions."""

    trunk: type[nn.Module]
    summary: str
    heads: str | None = None
    needs_descriptions: bool = False


ARCHS: dict[str, Arch] = {
    "mlp": Arch(MLPTrunk, "one-hot-conditioned MLP (Yu et al. 2019)"),
    "multihead": Arch(MLPTrunk, "the MLP with one output head per task", heads="multi"),
    "film": Arch(FiLMTrunk, "MLP whose layers are scaled and shifted per task (FiLM, Perez et al. 2018)"),
    "softmod": Arch(SoftModTrunk, "Soft Modularization (Yang et al. 2020): routing over module layers"),
    "care": Arch(CARETrunk, "CARE (Sodhani et al. 2021): encoders attended by a task-description context",
                 needs_descriptions=True),
    "moore": Arch(MOORETrunk, "MOORE (Hendawi et al. 2024): Gram-Schmidt-orthogonal experts mixed per task"),
    "paco": Arch(PaCoTrunk, "PaCo (Sun et al. 2022): task weights combine K shared parameter sets"),
    "lora": Arch(LoRATrunk, "shared MLP with per-task low-rank adapters (LoRA, Hu et al. 2022)"),
}
# Constructor arguments that are not ``arch_args``: set by the networks that build a trunk
# (``layer_norm``: MT-SAC's ``sac.critic_layer_norm``, for the critic's MLP trunk only).
_COMMON = ("in_dim", "hidden", "num_tasks", "act", "layer_norm")


def get(name: str) -> Arch:
    """The registry entry of ``name``; an unknown name lists the valid ones."""
    if name not in ARCHS:
        raise MtrlError(f"unknown architecture {name!r}; {did_you_mean(name, ARCHS)}valid architectures: {choices(ARCHS)}")
    return ARCHS[name]


def options(name: str) -> dict[str, object]:
    """The ``arch_args`` an architecture takes, with their defaults."""
    sig = inspect.signature(get(name).trunk.__init__)
    return {k: p.default for k, p in sig.parameters.items() if k != "self" and k not in _COMMON}


def check_args(name: str, args: dict) -> None:
    """Unknown ``arch_args`` keys raise, naming the valid ones."""
    valid = options(name)
    bad = [k for k in args if k not in valid]
    if bad:
        raise MtrlError(f"architecture {name!r} takes no option {bad[0]!r}; its options: "
                        f"{', '.join(f'{k} (default {v!r})' for k, v in valid.items() if k != 'descriptions') or 'none'}")


def heads_for(name: str, heads: str) -> str:
    """The heads an agent uses with architecture ``name`` (``multihead`` implies per-task heads)."""
    a = get(name)
    if name != "mlp" and heads == "ensemble":
        raise ValueError(f"heads=ensemble (one whole network per task) has no {name!r} form; use arch=mlp")
    return a.heads or heads


def build(name: str, in_dim: int, hidden: Sequence[int], num_tasks: int, act: type[nn.Module] = nn.ReLU,
          layer_norm: bool = False, **args) -> nn.Module:
    """A trunk ``(x, task_ids) -> [B, out_dim]`` of architecture ``name`` (``layer_norm``: only for
    the trunks built on :class:`MLPTrunk`, see :func:`takes_layer_norm`)."""
    check_args(name, args)
    if layer_norm:
        if not takes_layer_norm(name):
            raise MtrlError(f"sac.critic_layer_norm is built for the MLP trunks (mlp, multihead), not arch={name!r}")
        args["layer_norm"] = True
    return get(name).trunk(in_dim, list(hidden), num_tasks, act, **args)


def takes_layer_norm(name: str) -> bool:
    """Whether architecture ``name``'s trunk is the plain MLP (which has a LayerNorm form)."""
    return get(name).trunk is MLPTrunk


def count_params(module: nn.Module) -> tuple[int, int]:
    """``(total, per-task)`` parameter counts: per-task ones are those of task-specific modules."""
    from mtrl.surgery.apply import task_specific_names

    specific = task_specific_names(module)
    named = dict(module.named_parameters())
    return sum(p.numel() for p in named.values()), sum(named[n].numel() for n in specific if n in named)
