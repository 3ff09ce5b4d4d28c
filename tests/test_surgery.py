"""Gradient surgery: aggregators on hand-made gradients, torchjd agreement, per-task Jacobian, toy landscape."""

import math

import numpy as np
import pytest
import torch
from torchjd.aggregation import PCGrad as JDPCGrad
from torchjd.aggregation import UPGrad as JDUPGrad

import mtrl.surgery as S
from mtrl.agents.sac_networks import TwinQ
from mtrl.errors import MtrlError
from mtrl.surgery.apply import SurgeryStep, task_specific_names
from mtrl.surgery.jacobian import flatten_grads, group_by_task, naive_per_task_grads, per_task_grads
from mtrl.surgery.nashmtl import nash_weights
from mtrl.surgery.songoku import welsh_powell

G2 = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # conflicting: g1 . g2 = -1


def test_pcgrad_two_conflicting_vectors():
    d = S.get("pcgrad")(G2)
    # g1^PC = g1 - (g1.g2/|g2|^2) g2 = (0.5, 0.5); g2^PC = g2 - (g2.g1/|g1|^2) g1 = (0, 1); mean
    torch.testing.assert_close(d, torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(d * 2, JDPCGrad()(G2))  # torchjd sums, mtrl averages


def test_pcgrad_leaves_agreeing_gradients_alone_and_matches_torchjd():
    G = torch.tensor([[1.0, 0.2, 0.0], [0.5, 1.0, 0.1]])
    torch.testing.assert_close(S.get("pcgrad")(G), G.mean(0))
    torch.manual_seed(0)
    for _ in range(5):  # T=2: the projection order does not matter, results must agree exactly
        G = torch.randn(2, 7)
        torch.testing.assert_close(S.get("pcgrad")(G) * 2, JDPCGrad()(G), rtol=1e-5, atol=1e-6)


def test_mgda_min_norm_point():
    d = S.get("mgda")(G2)
    torch.testing.assert_close(d, torch.tensor([0.2, 0.4]), rtol=1e-4, atol=1e-4)  # w = 0.6 on segment
    torch.manual_seed(1)
    G = torch.randn(4, 6)
    d = S.get("mgda")(G)
    assert torch.all(G @ d >= (d @ d) - 1e-4)  # KKT of the min-norm point: g_i . d >= ||d||^2


def test_cagrad_c0_is_mean_and_c_improves_worst_task():
    torch.manual_seed(2)
    G = torch.randn(5, 8)
    torch.testing.assert_close(S.get("cagrad", c=0.0)(G), G.mean(0))
    g0 = G.mean(0)
    d = S.get("cagrad", c=0.5, rescale=False)(G)
    # CAGrad maximises the worst local improvement min_i g_i . d within ||d - g0|| <= c ||g0||
    assert (d - g0).norm() <= 0.5 * g0.norm() + 1e-4
    assert (G @ d).min() >= (G @ g0).min() - 1e-5
    assert S.get("fastcagrad", c=0.5)(G).shape == (8,)


def test_nash_mtl_bargaining_solution():
    torch.manual_seed(3)
    G = torch.randn(4, 10).double()
    M = G @ G.T
    a = nash_weights(M)
    assert torch.all(a > 0)
    torch.testing.assert_close(M @ a, 1.0 / a, rtol=1e-6, atol=1e-6)


def test_imtlg_equal_projections_and_upgrad_no_conflict():
    torch.manual_seed(4)
    G = torch.randn(3, 5)
    d = S.get("imtlg")(G)
    proj = G @ d / G.norm(dim=1)
    torch.testing.assert_close(proj, proj.mean().expand(3), rtol=1e-4, atol=1e-5)
    d = S.get("upgrad")(G2)
    assert torch.all(G2 @ d >= -1e-6)
    torch.testing.assert_close(d, JDUPGrad()(G2), rtol=1e-4, atol=1e-4)


def test_alignedmtl_on_orthogonal_equal_norm_is_mean():
    G = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    torch.testing.assert_close(S.get("alignedmtl")(G), G.mean(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["alignedmtl", "imtlg", "upgrad", "mgda"])
def test_torchjd_methods_accurate_on_ill_conditioned_float32(name):
    """float32 gradients with cond(G) ~ 3e3 (the learners' dtype): mtrl's Gramian path agrees
    with torchjd's own aggregator run in float64 on the same matrix."""
    import torchjd.aggregation as jd

    gen = torch.Generator().manual_seed(5)
    U, _ = torch.linalg.qr(torch.randn(4000, 4, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    G = ((V * torch.tensor([1.0, 0.3, 0.01, 3e-4], dtype=torch.float64)) @ U.T).float()
    kw = {"epsilon": 1e-6, "max_iters": 1000} if name == "mgda" else {}
    ref = {"alignedmtl": jd.AlignedMTL, "imtlg": jd.IMTLG, "upgrad": jd.UPGrad, "mgda": jd.MGDA}[name](**kw)(G.double())
    d = S.get(name)(G).double()
    assert (d - ref).norm() <= 2e-3 * ref.norm(), ((d - ref).norm() / ref.norm()).item()


def test_surgery_step_with_nan_loss_applies_nothing_and_keeps_state():
    net = torch.nn.Linear(3, 1)
    step = SurgeryStep(net, S.get("famo"))
    x = torch.randn(2, 4, 3)

    def task_loss(call, tb):
        return (call(tb["x"]).squeeze(-1) - tb["y"]).pow(2).mean() + 1.0, {}

    out = step(task_loss, {"x": x, "y": torch.stack([torch.ones(4), torch.full((4,), float("nan"))])})
    assert not out["applied"] and net.weight.grad is None
    assert step.agg.prev is None and step.calls == 0  # FAMO's loss history untouched
    out = step(task_loss, {"x": x, "y": torch.zeros(2, 4)})
    assert out["applied"] and net.weight.grad is not None and step.agg.prev is not None


def test_samgs_rescales_on_magnitude_conflict():
    G = torch.tensor([[10.0, 0.0], [0.0, 0.1]])  # similarity 2*1/(100.01) << gamma
    d = S.get("samgs", gamma=0.9)(G)
    m = G.norm(dim=1).mean()
    torch.testing.assert_close(d, torch.tensor([m / 2, m / 2]))


def test_songoku_separates_conflicting_tasks():
    G = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [0.0, 1.0]])
    agg = S.get("songoku", tau=0.0)
    d1, d2 = agg(G), agg(G)
    torch.testing.assert_close(d1 + d2, G.mean(0))  # one cycle over the classes adds up to the mean
    assert len(agg.classes) == 2 and {0, 1} not in [set(c) for c in agg.classes]
    adj = torch.tensor([[0, 1, 1], [1, 0, 0], [1, 0, 0]], dtype=torch.bool)
    assert welsh_powell(adj) == [[0], [1, 2]]


def test_gcond_zones_and_arbiter():
    """GCond's smooth logic (eqs. 4-6) by hand: moderate zone projects the loser fully and the
    winner partially; critical zone is PCGrad on the loser only; the stronger task wins."""
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # cos = -0.707: moderate zone
    alpha = math.pi / 2 * (1 + ((-1 / math.sqrt(2) + 0.5) / (-0.8 + 0.5)) ** 2)
    s_w = math.sin(alpha)
    # first call: no stability history; strength r = ||g|| / EMA(||g||) favours g2 (norm sqrt 2)
    win = g2 - s_w * (g1 @ g2) / (g1 @ g1) * g1
    lose = g1 - 1.0 * (g1 @ g2) / (g2 @ g2) * g2
    agg = S.get("gcond")
    torch.testing.assert_close(agg(torch.stack([g1, g2])), (win + lose) / 2)
    assert agg.resolved == 1  # after one step the pair no longer conflicts
    G = torch.tensor([[1.0, 0.0], [-2.0, 0.1]])  # cos = -0.9988: critical zone
    pc = G[0] - (G[0] @ G[1]) / (G[1] @ G[1]) * G[1]
    torch.testing.assert_close(S.get("gcond")(G), (pc + G[1]) / 2)
    mild = torch.tensor([[1.0, 0.0], [-0.2, 1.0]])  # cos = -0.196: mild zone, symmetric partial
    s = math.sin(math.pi / 2 * (1 - (-0.2 / math.sqrt(1.04) + 0.5) / 0.5))
    dot = mild[0] @ mild[1]
    want = (mild[0] - s * dot / (mild[1] @ mild[1]) * mild[1] + mild[1] - s * dot / (mild[0] @ mild[0]) * mild[0]) / 2
    torch.testing.assert_close(S.get("gcond", max_iters=1)(mild), want)
    dom = S.get("gcond", dominance=1, max_iters=1)  # a task that just won loses the next arbitration
    dom(torch.stack([g1, g2]))
    assert dom.hist == [1]
    dom(torch.stack([g1, g2]))
    assert dom.hist == [0]
    restored = S.get("gcond", dominance=1, max_iters=1)
    restored.load_state_dict(dom.state_dict())
    torch.testing.assert_close(restored(torch.stack([g1, g2])), dom(torch.stack([g1, g2])))
    G = torch.tensor([[1.0, 0.0], [-1.0, 0.05]])
    for scale in (1e-5, 1e3):  # scale-free: the direction scales with the gradients
        torch.testing.assert_close(S.get("gcond")(G * scale), S.get("gcond")(G) * scale)
    old = S.get("gcond")
    old.load_state_dict({"acc": torch.zeros(2, 2)})  # checkpoint of the earlier GCond: fresh state
    torch.testing.assert_close(old(G), S.get("gcond")(G))
    with pytest.raises(MtrlError, match="thresholds"):
        S.get("gcond", thresholds=(0.0, -0.5, -0.8))


def test_loss_weighting_methods():
    G = torch.eye(3)
    L = torch.tensor([1.0, 2.0, 4.0])
    igb = S.get("igb", base_steps=1)
    d = igb(G, L)
    torch.testing.assert_close(d, (1.0 / L) / 3)  # w = 1: d = (1/T) sum_i g_i / L_i
    torch.testing.assert_close(igb.w, torch.full((3,), 1.0, dtype=torch.float64))  # L / L_base = 1 everywhere
    u = S.get("uncertainty", lr=0.5)
    for _ in range(200):
        u(G, L)
    np.testing.assert_allclose(torch.exp(u.s).numpy(), L.numpy(), rtol=1e-2)  # sigma^2 -> L at the optimum
    famo = S.get("famo", lr=0.5)
    famo(G, torch.tensor([1.0, 1.0, 1.0]))
    for _ in range(20):  # task 0 improves, task 2 gets worse: FAMO shifts weight to task 2
        famo(G, torch.tensor([0.5, 1.0, 2.0]))
    z = torch.softmax(famo.xi, 0)
    assert z[2] > z[1] > z[0]
    gn = S.get("gradnorm")
    gn(torch.tensor([[1.0, 0], [0, 10.0]]), torch.tensor([1.0, 1.0]))
    assert gn.w[0] > gn.w[1] and math.isclose(float(gn.w.sum()), 2.0)
    with pytest.raises(ValueError, match="losses"):
        S.get("famo")(G)


@pytest.mark.parametrize("name", S.names())
def test_every_method_survives_zero_and_nan_rows(name):
    agg = S.get(name)
    G = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [float("nan"), 1.0, 0.0], [-1.0, 0.5, 1.0]])
    L = torch.tensor([1.0, 0.5, float("nan"), 2.0])
    for _ in range(3):
        d = agg(G, L if agg.needs_losses else None)
        assert d.shape == (3,) and torch.isfinite(d).all()
    zero = agg(torch.zeros(4, 3), torch.ones(4) if agg.needs_losses else None)
    assert torch.equal(zero, torch.zeros(3))


def test_unknown_method_lists_valid_ones():
    with pytest.raises(MtrlError, match="unknown surgery method 'pcgard'; did you mean 'pcgrad'. valid methods: 'mean', 'sum', 'pcgrad'"):
        S.get("pcgard")
    with pytest.raises(MtrlError, match="bad parameters for surgery 'cagrad'"):
        S.get("cagrad", cc=1)


def test_group_by_task_pads_and_masks():
    idx, mask = group_by_task(torch.tensor([2, 0, 2, 2, 0]), 3)
    assert mask.tolist() == [[True, True, False], [False, False, False], [True, True, True]]
    assert idx[0, :2].tolist() == [1, 4] and idx[2].tolist() == [0, 2, 3]
    assert idx[0, 2] == 4 and idx[1].tolist() == [0, 0, 0]  # padded with the task's own last row; none: row 0


def test_vmap_per_task_grads_equal_naive_loop_and_heads_stay_separate():
    torch.manual_seed(0)
    T, n, D, A = 3, 8, 6, 2
    net = TwinQ(D, A, T, [16, 16], heads="multi")
    obs, act = torch.randn(T, n, D), torch.randn(T, n, A)
    tids = torch.arange(T).repeat_interleave(n).view(T, n)
    y = torch.randn(T, n)

    def task_loss(call, tb):
        return (0.5 * (call(tb["obs"], tb["act"], tb["tids"]) - tb["y"]).pow(2).sum(0)).mean(), {}

    names = [k for k, _ in net.named_parameters()]
    grads, task_losses, _ = per_task_grads(net, names, task_loss, {"obs": obs, "act": act, "tids": tids, "y": y})
    fast = flatten_grads(grads, names)
    q = net(obs.view(-1, D), act.view(-1, A), tids.view(-1))
    losses = (0.5 * (q - y.view(-1)).pow(2).sum(0)).view(T, n).mean(1)
    slow = naive_per_task_grads(losses, list(net.parameters()))
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(task_losses, losses.detach())
    for k in range(2):  # each critic's head: [T, heads, in]; task t's gradient touches only row t
        head = grads[f"heads.{k}.weight"]
        for t in range(T):
            others = [j for j in range(T) if j != t]
            assert torch.all(head[t][others] == 0) and head[t][t].abs().sum() > 0
    assert task_specific_names(net) == {f"heads.{k}.{p}" for k in range(2) for p in ("weight", "bias")}


def test_surgery_step_writes_grads():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    step = SurgeryStep(net, S.get("pcgrad"), diagnostics_every=1)
    x = torch.randn(2, 4, 3)
    tgt = torch.stack([torch.ones(4), -torch.ones(4)])  # opposite targets: conflicting tasks

    def task_loss(call, tb):
        return (call(tb["x"]).squeeze(-1) - tb["y"]).pow(2).mean(), {}

    out = step(task_loss, {"x": x, "y": tgt})
    assert net.weight.grad is not None and torch.isfinite(net.weight.grad).all()
    assert out["losses"].shape == (2,)
    diag = out["stats"]["_diagnostics"]
    assert diag["cosine"].shape == (2, 2) and 0 <= diag["conflict_fraction"] <= 1 and diag["grad_norm"].shape == (2,)


LOWER = 5e-6


def _toy_losses(x):
    """The two-objective toy of the CAGrad paper (Liu et al. 2021, figure 1 / their toy.py)."""
    x1, x2 = x[0], x[1]
    f1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), LOWER).log() + 6
    f2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), LOWER).log() + 6
    c1 = torch.clamp(torch.tanh(x2 * 0.5), 0)
    f1_sq = ((-x1 + 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    f2_sq = ((-x1 - 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    c2 = torch.clamp(torch.tanh(-x2 * 0.5), 0)
    return torch.stack([f1 * c1 + f1_sq * c2, f2 * c1 + f2_sq * c2])


def _descend(name, steps=3000, **kw):
    agg = S.get(name, **kw)
    x = torch.tensor([9.0, 9.0], requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.01)
    for _ in range(steps):
        L = _toy_losses(x)
        G = torch.stack([torch.autograd.grad(L[t], x, retain_graph=True)[0] for t in range(2)])
        opt.zero_grad()
        x.grad = agg(G, L.detach())
        opt.step()
    return _toy_losses(x).detach()


def test_toy_landscape_mean_stuck_pcgrad_cagrad_escape():
    """From (9, 9), 3000 Adam steps (lr 0.01): the mean gradient stays in the upper valley with
    both losses positive; PCGrad and CAGrad leave it and end Pareto-dominating the mean's point
    (both losses lower). Measured: mean (4.99, 2.53), PCGrad (-17.9, -4.9), CAGrad (-16.8, -4.9)."""
    mean = _descend("mean")
    assert torch.all(mean > 0)
    for name, kw in [("pcgrad", {}), ("cagrad", {"c": 0.5})]:
        other = _descend(name, **kw)
        assert torch.all(other < mean - 5), (name, other, mean)


@pytest.mark.parametrize("name", S.names())
def test_every_method_runs_in_mtsac_and_mtppo(name):
    import gymnasium as gym

    from mtrl.agents import MTPPO, MTSAC, PPOConfig, SACConfig

    T, D = 3, 7
    r = np.random.default_rng(0)
    sac = MTSAC(SACConfig(hidden=[16, 16], batch_per_task=8, heads="multi"), D, T,
                gym.spaces.Box(-1, 1, (2,), np.float32), surgery=name, diagnostics_every=1)
    n = 3 * 8
    batch = {"obs": r.normal(size=(n, D)).astype(np.float32), "actions": r.uniform(-1, 1, (n, 2)).astype(np.float32),
             "rewards": r.normal(size=n).astype(np.float32), "next_obs": r.normal(size=(n, D)).astype(np.float32),
             "terminated": np.zeros(n, np.float32), "task_ids": np.repeat(np.arange(T), 8)}
    before = [p.detach().clone() for p in sac.actor.parameters()]
    out = sac.update(batch)
    assert "_diagnostics/critic" in out and "_diagnostics/actor" in out
    assert any(not torch.equal(a, b) for a, b in zip(before, sac.actor.parameters()))
    ppo = MTPPO(PPOConfig(hidden=[16], epochs=1, minibatches=2), D, T, gym.spaces.Discrete(3), surgery=name,
                diagnostics_every=1)
    S_, N = 6, 4
    ro = {"obs": r.normal(size=(S_, N, D)).astype(np.float32), "actions": r.integers(0, 3, (S_, N)),
          "logp": np.full((S_, N), -1.1, np.float32), "values": np.zeros((S_, N), np.float32),
          "rewards": r.normal(size=(S_, N)).astype(np.float32), "terminated": np.zeros((S_, N), bool),
          "truncated": np.zeros((S_, N), bool), "task_ids": np.tile(np.array([0, 1, 2, 2]), (S_, 1)),
          "bootstrap": np.zeros((S_, N), np.float32), "last_values": np.zeros(N, np.float32)}
    out = ppo.update(ro)
    assert "_diagnostics" in out and np.isfinite(out["loss/task"]).all()


def test_loop_jacobian_gives_the_same_update_as_vmap():
    import copy

    import gymnasium as gym

    from mtrl.agents import MTSAC, SACConfig

    a = MTSAC(SACConfig(hidden=[16, 16], batch_per_task=4), 5, 2, gym.spaces.Box(-1, 1, (2,), np.float32),
              surgery="pcgrad")
    b = copy.deepcopy(a)
    b.critic_surgery.jacobian = b.actor_surgery.jacobian = "loop"
    r = np.random.default_rng(0)
    batch = {"obs": r.normal(size=(8, 5)).astype(np.float32), "actions": r.uniform(-1, 1, (8, 2)).astype(np.float32),
             "rewards": r.normal(size=8).astype(np.float32), "next_obs": r.normal(size=(8, 5)).astype(np.float32),
             "terminated": np.zeros(8, np.float32), "task_ids": np.repeat(np.arange(2), 4)}
    a.update(batch)
    b.update(batch)
    for (k, p), q in zip(a.actor.named_parameters(), b.actor.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=k)
