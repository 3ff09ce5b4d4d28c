"""CAMRL: curriculum-based asymmetric multi-task RL (Huang et al., IEEE TPAMI 2023, arXiv 2211.03352).

Every task has its own policy w_t (``ppo.heads: ensemble`` or ``sac.heads: ensemble``: one network
per task, stored as batched ``[T, ...]`` weights, so ``W = net.task_matrix()`` is a ``[T, P]`` matrix),
or, with MT-PPO's ``ppo.heads: multi``, a shared trunk and w_t = task t's own output layers.
Training runs in rounds; each round is in one of two modes.

**Mode switch.** After each round, with l the per-task learner losses (MT-PPO's per-task loss),
mu/sigma their mean/std across tasks, z_k the z-score of l_k against task k's own history of
round-end losses, and i the round number:

    I = 1/3 #{k : |l_k - mu| > c sigma} / T  +  1/3 exp(-i / a)  +  1/3 exp(-mean_k z_k / b)

The next round is *asymmetric multi-task* with probability min(I, 1), otherwise *parallel
single-task*: every task trains on its own (uniform task sampling, no cross-task term) for
``T x iters_per_task`` iterations. The first ``warmup_rounds`` rounds are parallel.

**Asymmetric round.** Tasks are trained one after another in an order pi built on the fly. At
each position, among the tasks U not yet trained this round, the next task is

    t = argmin_{t in U} C(t, b_t)

where b_t (row t of the transfer matrix B, B_ts = transfer from t to s, B >= 0, ||b_t||_1 <= r)
then takes ``fw_steps`` Frank-Wolfe steps on C(t, .) restricted to the tasks s in U \\ {t} (the
paper's supplement, Eq. 7: a task only sends transfer to tasks later in the order). The task then
trains for ``iters_per_task`` iterations: slots draw it with probability 1 - eps (eps / T for the
others), and its policy gets the regulariser

    R(w_t) = lambda ||w_t - sum_{j earlier in pi} B_jt w_j||^2

(sources detached: earlier tasks teach, they are not pulled back). The composite loss is

    C(t, b) = sum_k term_k / s_k^2 + log prod_k s_k       (s_k: std of term k's history;
                                                           plain sum while it has < 2 entries)
    term_0 = (1 + mu sum_s b_s) L_t                          task loss x outgoing transfer
    term_1 = sum_{s in U\\t} ||w_s - sum_{j earlier} B_js w_j - b_s w_t||^2 / P
    term_2 = sum_{s in U\\t} (softrank_s(b) - rank_s(prior_t))^2       (needs ``task_graph``)
    term_3 = sum_{s in U\\t} (softrank_s(b) - rank_s(L))^2              (more transfer to worse tasks)
    term_4 = sum_{s in U\\t} (softrank_s(b) - rank_s(cos(w_t^last, w_s^last)))^2

with the descending soft rank softrank_i(x) = 1 + sum_{j != i} sigmoid(kappa (x_j - x_i)), which
tends to the hard rank 1 + #{j : x_j > x_i} (ties counting 1/2) as the sharpness kappa grows.

**Choices made here** (the main text was not available; the released code is a notebook export
that does not run: see docs/camrl-notes.md for what each source says):

1. The base learner is MT-PPO or MT-SAC with per-task networks (``heads: ensemble``; the paper
   uses per-task SAC agents). w in R and term_1 is, for MT-PPO, each task's actor and critic;
   for MT-SAC each task's actor (as in the released code), R entering the actor loss.
   Shared-trunk variant (``ppo.heads: multi``, agents/mtppo-camrl-shared.yaml; not in the paper):
   w is task t's actor and critic output layers (and log std), so B, R and term_1 act on the
   heads while the trunk is trained by every task's loss as in uniform MT-PPO. The per-task
   networks gave each task 1/T of the data and no shared features, and learned almost nothing
   on the MiniGrid ladder (BENCHMARKS.md).
2. L_t in term_0 and in the loss ranking is 1 - (windowed success of task t): PPO's loss is
   sign-indefinite, and (1 + mu sum b) L only discourages sending transfer from a task when L >= 0.
   The indicator I uses the learner's per-task loss (MT-PPO: its PPO loss; MT-SAC: the critic
   loss; the code uses the SAC policy loss), and z-scores it against the round-end losses of the
   *earlier* rounds (the code's history already holds the current round).
3. The feasible set is the paper's {b >= 0, ||b||_1 <= r} with r = 1 (so the pull target is at most
   a convex combination of earlier tasks; the code's box [0, 0.05] makes the pull a shrinkage);
   the Frank-Wolfe oracle is r e_j for the most negative gradient entry j (0 if none), the step
   2 / (k + 2), and the best iterate is kept, so a row update never raises C.
4. term_1 is divided by P (the parameter count) so it is on the scale of the other terms; R uses
   the plain squared norm with lambda = ``reg_coef`` (the code adds its composite / 10 to the
   actor loss). R is skipped while task t receives no transfer (sum_j B_jt = 0) rather than
   decaying w_t toward zero.
5. The prior ranking comes from the env preset's task graph: task s ranks first for task t if
   s is a descendant of t (a later rung of its ladder), all others tie. Without a graph, term_2
   is dropped. The loss ranking gives *more* transfer to tasks with a higher loss, as in the code.
6. I is clipped to [0, 1], and a task whose loss history is flat has z = 0 (the code divides by
   1e-5 + std, which saturates I); a = ``time_scale`` rounds (code: 1000 rounds of a 10,000-round run;
   our runs have tens to hundreds of rounds), b = 40 and c = 2 as in the code.
7. One round position lasts ``iters_per_task`` training iterations, and slots switch task only
   when their episode ends, so the focus task's share of a rollout ramps up over the position.
   Tasks not in focus still train on the transitions they produce (independently with per-task
   networks; through the shared trunk with heads), which the paper's one-agent-at-a-time schedule
   does not do.
8. B starts at zero (no transfer) and persists across rounds; only the chosen task's row changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mtrl.curriculum.base import Scheduler, TaskStats, check_range
from mtrl.curriculum.mastering_rate import parse_graph
from mtrl.errors import MtrlError


def soft_rank(x: torch.Tensor, sharpness: float) -> torch.Tensor:
    """Descending soft rank: ``1 + sum_{j != i} sigmoid(k (x_j - x_i))`` (rank 1 = largest)."""
    d = torch.sigmoid(sharpness * (x[None, :] - x[:, None]))  # [i, j]
    return 1.0 + d.sum(1) - torch.diagonal(d)


def hard_rank(x: np.ndarray) -> np.ndarray:
    """Descending rank with ties sharing: ``1 + #{x_j > x_i} + #{j != i: x_j == x_i} / 2``."""
    x = np.asarray(x, np.float64)
    gt = (x[None, :] > x[:, None]).sum(1)
    eq = (x[None, :] == x[:, None]).sum(1) - 1
    return 1.0 + gt + 0.5 * eq


def frank_wolfe(f, b0: torch.Tensor, free: torch.Tensor, radius: float, steps: int) -> torch.Tensor:
    """Minimise ``f`` over ``{b >= 0, sum(b) <= radius, b = 0 outside free}`` from ``b0``.

    Vanilla Frank-Wolfe: the linear oracle on this simplex-like set is ``radius e_j`` for the most
    negative gradient entry j among the free ones (the origin if none is negative); step
    ``2 / (k + 2)``. Returns the best iterate, so ``f`` never rises.
    """
    b = (b0 * free).clone()
    best, best_f = b.clone(), float(f(b))
    for k in range(steps):
        bv = b.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(f(bv), bv)
        g = torch.where(free, g, torch.full_like(g, np.inf))
        s = torch.zeros_like(b)
        j = int(torch.argmin(g))
        if g[j] < 0:
            s[j] = radius
        b = b + 2.0 / (k + 2.0) * (s - b)
        fb = float(f(b))
        if fb < best_f:
            best, best_f = b.clone(), fb
    return best


class CAMRL(Scheduler):
    name = "camrl"
    needs_task_params = True  # per-task parameters: ppo.heads=ensemble|multi or sac.heads=ensemble
    state_attrs = ("B", "mode", "round", "order", "remaining", "left", "focus", "loss_hist", "term_hist",
                   "last_loss", "indicator", "rng")

    def __init__(self, task_names, task_graph=None, radius: float = 1.0, fw_steps: int = 10, mu: float = 0.2,
                 reg_coef: float = 1e-3, sharpness: float = 50.0, time_scale: float = 50.0, z_scale: float = 40.0,
                 band: float = 2.0, warmup_rounds: int = 3, iters_per_task: int = 2, eps: float = 0.1,
                 seed: int = 0):
        super().__init__(task_names)
        T = self.num_tasks
        self.radius = check_range("radius", radius, 0.0, 1e6, lo_open=True)
        self.fw_steps = int(fw_steps)
        self.mu = check_range("mu", mu, 0.0, 1e6)
        self.reg_coef = check_range("reg_coef", reg_coef, 0.0, 1e6)
        self.sharpness = check_range("sharpness", sharpness, 0.0, 1e9, lo_open=True)
        self.time_scale = check_range("time_scale", time_scale, 0.0, 1e12, lo_open=True)
        self.z_scale = check_range("z_scale", z_scale, 0.0, 1e12, lo_open=True)
        self.band = check_range("band", band, 0.0, 1e6)
        self.eps = check_range("eps", eps, 0.0, 1.0)
        if int(warmup_rounds) < 0 or int(iters_per_task) < 1 or self.fw_steps < 0:
            raise MtrlError(f"curriculum_args need warmup_rounds >= 0, iters_per_task >= 1, fw_steps >= 0; got "
                            f"{warmup_rounds}, {iters_per_task}, {fw_steps}")
        self.warmup_rounds, self.iters_per_task = int(warmup_rounds), int(iters_per_task)
        self.prior = np.zeros((T, T))  # prior[t, s] = 1: s is a later rung of t's ladder
        if task_graph:
            edges = parse_graph(task_graph, self.task_names)
            children = {c: [j for i, j in edges if i == c] for c in range(T)}
            for t in range(T):
                todo = list(children[t])
                while todo:
                    s = todo.pop()
                    if not self.prior[t, s]:
                        self.prior[t, s] = 1.0
                        todo += children[s]
        self.use_prior = bool(task_graph)
        self.B = np.zeros((T, T))
        self.mode = "parallel"
        self.round = 0
        self.order: list[int] = []
        self.remaining: list[int] = []
        self.left = T * self.iters_per_task  # iterations left in the current parallel round / position
        self.focus: int | None = None
        self.loss_hist: list[np.ndarray] = []
        self.term_hist: list[list[float]] = [[] for _ in range(5)]
        self.last_loss = np.zeros(T)
        self.last_success = np.zeros(T)
        self.indicator = float("nan")
        self.rng = np.random.default_rng(seed)
        self.agent: Any = None

    # ------------------------------------------------------------------ wiring
    def attach(self, agent: Any) -> None:
        """Install the transfer regulariser on the learner (per-task networks required)."""
        net = getattr(agent, "policy", None)
        per_task = getattr(net, "has_task_matrix", getattr(net, "ensemble", False))
        if not per_task or not hasattr(agent, "extra_loss"):
            raise MtrlError("curriculum 'camrl' needs per-task parameters: set ppo.heads=ensemble or multi, or "
                            "sac.heads=ensemble (see agents/mtppo-camrl.yaml, agents/mtppo-camrl-shared.yaml, "
                            "agents/mtsac-camrl.yaml)")
        self.agent = agent
        agent.extra_loss = self.regulariser

    def regulariser(self) -> torch.Tensor | None:
        """R(w_t) = lambda ||w_t - sum_{j earlier} B_jt w_j||^2 for the task in focus (else None)."""
        t = self.focus
        if self.mode != "multi" or t is None or self.reg_coef == 0:
            return None
        earlier = self.order[:-1]
        col = self.B[earlier, t] if earlier else np.zeros(0)
        if col.sum() <= 0:
            return None
        W = self.agent.policy.task_matrix()
        target = torch.as_tensor(col, dtype=W.dtype) @ W[earlier].detach()
        return self.reg_coef * (W[t] - target).pow(2).sum()

    # ------------------------------------------------------------------ composite loss
    def _weights_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.agent.policy
        with torch.no_grad():
            return net.task_matrix().detach().double(), net.last_layer().detach().double()

    def composite_terms(self, t: int, b: torch.Tensor, W: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The five terms of C(t, b) (b: row t of B as a ``[T]`` tensor) for the current round."""
        L = torch.as_tensor(1.0 - self.last_success, dtype=b.dtype)
        targets = [s for s in self.remaining if s != t]
        earlier = list(self.order)
        term0 = (1.0 + self.mu * b.sum()) * L[t]
        zero = b.sum() * 0.0
        if not targets:
            return torch.stack([term0, zero, zero, zero, zero])
        Bt = torch.as_tensor(self.B, dtype=b.dtype)
        recon = (Bt[earlier][:, targets].T @ W[earlier]) if earlier else torch.zeros(len(targets), W.shape[1],
                                                                                      dtype=b.dtype)
        term1 = (W[targets] - recon - b[targets, None] * W[t][None]).pow(2).sum() / W.shape[1]
        sr = soft_rank(b[targets], self.sharpness)

        def rank_term(score: np.ndarray) -> torch.Tensor:
            return (sr - torch.as_tensor(hard_rank(score), dtype=b.dtype)).pow(2).sum()

        term2 = rank_term(self.prior[t, targets]) if self.use_prior else zero
        term3 = rank_term(L.numpy()[targets])
        cos = torch.nn.functional.cosine_similarity(last[t][None], last[targets], dim=1)
        term4 = rank_term(cos.numpy())
        return torch.stack([term0, term1, term2, term3, term4])

    def _weighted(self, terms: torch.Tensor) -> torch.Tensor:
        """sum_k term_k / s_k^2 + log prod_k s_k, s_k the std of term k's history (plain sum before)."""
        if len(self.term_hist[0]) < 2:
            return terms.sum()
        sd = torch.as_tensor([max(float(np.std(h)), 1e-3) for h in self.term_hist], dtype=terms.dtype)
        return (terms / sd**2).sum() + torch.log(sd).sum()

    def composite(self, t: int, b: torch.Tensor, W: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        return self._weighted(self.composite_terms(t, b, W, last))

    def _next_position(self) -> None:
        """Choose the next task of the asymmetric round and update its row of B by Frank-Wolfe."""
        W, last = self._weights_matrix()
        def row(t: int) -> torch.Tensor:  # B[t] restricted to the tasks it may still send transfer to
            keep = np.zeros(self.num_tasks)
            keep[[s for s in self.remaining if s != t]] = 1.0
            return torch.as_tensor(self.B[t] * keep)

        cands = {t: float(self.composite(t, row(t), W, last)) for t in self.remaining}
        t = min(cands, key=lambda k: (cands[k], k))
        free = torch.zeros(self.num_tasks, dtype=torch.bool)
        free[[s for s in self.remaining if s != t]] = True
        b = frank_wolfe(lambda x: self.composite(t, x, W, last), torch.as_tensor(self.B[t]), free, self.radius,
                        self.fw_steps)
        self.B[t] = b.numpy()
        with torch.no_grad():
            for k, v in enumerate(self.composite_terms(t, b, W, last).tolist()):
                self.term_hist[k].append(v)
        self.remaining.remove(t)
        self.order.append(t)
        self.focus = t
        self.left = self.iters_per_task

    # ------------------------------------------------------------------ rounds
    def mode_indicator(self) -> float:
        """I from the latest round-end losses (see the module docstring), clipped to [0, 1]."""
        loss = self.last_loss
        mu, sd = float(np.mean(loss)), float(np.std(loss))
        outliers = float(np.mean(np.abs(loss - mu) > self.band * sd)) if sd > 0 else 0.0
        hist = np.asarray(self.loss_hist)
        z = np.zeros_like(loss)
        if len(hist):
            sd_h = hist.std(0)
            z = np.where(sd_h > 1e-8, (loss - hist.mean(0)) / np.maximum(sd_h, 1e-8), 0.0)  # flat history: z = 0
        zterm = np.exp(min(-float(np.mean(z)) / self.z_scale, 50.0))
        i = (outliers + np.exp(-self.round / self.time_scale) + zterm) / 3.0
        return float(np.clip(i, 0.0, 1.0))

    def _start_round(self) -> None:
        self.round += 1
        self.indicator = self.mode_indicator()
        self.loss_hist.append(self.last_loss.copy())
        # rounds 0 .. warmup_rounds - 1 are parallel (round 0 is the one the run starts in)
        multi = self.round >= self.warmup_rounds and self.rng.random() < self.indicator
        self.order, self.focus = [], None
        if multi:
            self.mode = "multi"
            self.remaining = list(range(self.num_tasks))
            self._next_position()
        else:
            self.mode = "parallel"
            self.remaining = []
            self.left = self.num_tasks * self.iters_per_task

    def update(self, stats: TaskStats) -> None:
        if stats.loss is not None:
            seen = np.isfinite(stats.loss)
            self.last_loss[seen] = stats.loss[seen]
        succ = np.asarray(stats.success, np.float64)
        self.last_success = np.where(np.isfinite(succ), succ, self.last_success)
        self.left -= 1
        if self.left > 0:
            return
        if self.mode == "multi" and self.remaining:
            self._next_position()
        else:
            self._start_round()

    def weights(self) -> np.ndarray | None:
        T = self.num_tasks
        if self.mode == "multi" and self.focus is not None:
            w = np.full(T, self.eps / T)
            w[self.focus] += 1.0 - self.eps
            return w
        return np.full(T, 1.0 / T)

    def log(self) -> dict:
        return {"curriculum/camrl_multi_mode": float(self.mode == "multi"),
                "curriculum/camrl_indicator": self.indicator, "curriculum/camrl_round": float(self.round),
                "curriculum/transfer": self.B.copy()}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["rng"] = self.rng.bit_generator.state
        state["last_success"] = self.last_success.copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rng_state = state["rng"]
        super().load_state_dict({**state, "rng": self.rng})
        self.rng.bit_generator.state = rng_state
        self.last_success = state["last_success"].copy()
