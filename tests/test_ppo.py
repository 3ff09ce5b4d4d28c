"""MT-PPO maths (GAE, per-task losses) and learning on a trivial task."""

import numpy as np
import pytest
import torch

from mtrl.agents import MTPPO, PPOConfig
from mtrl.agents.losses import mean_of_present, per_task_mean
from mtrl.agents.ppo import compute_gae
from mtrl.envs import make
from mtrl.runners import Runner


def test_per_task_mean_and_missing_tasks():
    x = torch.tensor([1.0, 3.0, 10.0, 5.0])
    t = torch.tensor([0, 0, 2, 2])
    losses, present = per_task_mean(x, t, 3)
    assert torch.allclose(losses, torch.tensor([2.0, 0.0, 7.5]))
    assert present.tolist() == [True, False, True]
    assert mean_of_present(losses, present).item() == 4.75


def test_gae_matches_hand_computation():
    g, lam = 0.9, 0.8
    ro = {"rewards": np.array([[1.0], [0.0], [2.0]], np.float32), "values": np.array([[0.5], [0.2], [0.1]], np.float32),
          "terminated": np.array([[False], [True], [False]]), "truncated": np.zeros((3, 1), bool),
          "bootstrap": np.zeros((3, 1), np.float32), "last_values": np.array([0.3], np.float32)}
    adv, ret = compute_gae(ro, g, lam)
    d2 = 2.0 + g * 0.3 - 0.1
    d1 = 0.0 - 0.2  # terminal: no bootstrap, no carry
    d0 = 1.0 + g * 0.2 - 0.5
    expected = np.array([d0 + g * lam * d1, d1, d2])
    np.testing.assert_allclose(adv[:, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(ret, adv + ro["values"], rtol=1e-6)


def test_gae_bootstraps_truncation_with_final_value():
    ro = {"rewards": np.array([[1.0]], np.float32), "values": np.array([[0.0]], np.float32),
          "terminated": np.array([[False]]), "truncated": np.array([[True]]),
          "bootstrap": np.array([[2.0]], np.float32), "last_values": np.array([100.0], np.float32)}
    adv, _ = compute_gae(ro, 0.5, 0.95)
    assert np.isclose(adv[0, 0], 1.0 + 0.5 * 2.0)  # V(final obs), not V(next episode's first obs)


def _train(taskset_kwargs, cfg, iters, seed=0):
    probe = make(**taskset_kwargs)
    agent = MTPPO(cfg, probe.obs_dim, probe.num_tasks, probe.single_action_space, seed=seed)
    runner = Runner({**taskset_kwargs, "slots": list(range(probe.total_slots))}, agent.policy_spec, seed)
    returns = []
    for i in range(iters):
        ro = runner.sample(cfg.num_steps, agent.policy_state())
        agent.update(ro, i / iters)
        returns.append(ro["episodes"]["r"].mean() if len(ro["episodes"]["r"]) else 0.0)
    return agent, returns


def test_mtppo_improves_trivial_task():
    kw = dict(taskset="custom", tasks=["MiniGrid-Empty-5x5-v0"], envs_per_task=8, seed=0)
    cfg = PPOConfig(num_steps=64, lr=1e-3)
    _, returns = _train(kw, cfg, iters=30)
    assert np.mean(returns[-5:]) > np.mean(returns[:3]) + 0.3, returns


def test_multihead_continuous_update_runs_and_changes_only_used_heads():
    kw = dict(taskset="metaworld/MT1:reach-v3", envs_per_task=2, seed=0)
    probe = make(**kw)
    agent = MTPPO(PPOConfig(num_steps=16, heads="multi", adv_norm="task", epochs=1, minibatches=1),
                  probe.obs_dim, 3, probe.single_action_space, seed=0)  # 3 heads, only task 0 sampled
    head = agent.net.actor_head
    before = [torch.cat([w.detach().clone().flatten(), b.detach().clone()]) for w, b in map(head.head_params, range(3))]
    runner = Runner({**kw, "slots": [0, 1]}, {**agent.policy_spec}, 0)
    ro = runner.sample(16, agent.policy_state())
    out = agent.update(ro)
    after = [torch.cat([w.detach().flatten(), b.detach()]) for w, b in map(head.head_params, range(3))]
    assert not torch.equal(before[0], after[0])
    assert torch.equal(before[1], after[1]) and torch.equal(before[2], after[2])
    assert out["loss/task"].shape == (3,)


def test_fast_act_log_probs_match_distributions():
    import gymnasium as gym

    from mtrl.agents.networks import ActorCritic

    torch.manual_seed(0)
    obs, tids = torch.randn(16, 10), torch.randint(0, 3, (16,))
    for space in [gym.spaces.Discrete(5), gym.spaces.Box(-1, 1, (4,))]:
        for heads in ["single", "multi"]:
            net = ActorCritic(10, 3, space, hidden=[32], heads=heads)
            if not net.discrete:
                net.log_std.data.uniform_(-1, 0)
            a, logp, v = net.act(obs, tids, torch.Generator().manual_seed(1))
            ref, _ = net.log_prob_entropy(net.dist(obs, tids), a)
            torch.testing.assert_close(logp, ref, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(v, net.value(obs, tids))


@pytest.mark.parametrize("kl_coeff", [0.0, 5.0])
def test_surgery_path_with_mean_matches_plain_update_and_stats(kl_coeff):
    """The vmapped per-task path (forced by diagnostics) with ``mean`` gives the plain update and
    the same logged statistics, from one pass (uneven task counts: padding and masks), with and
    without the KL penalty."""
    kw = dict(taskset="custom", tasks=["MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-6x6-v0"], envs_per_task=3, seed=0)
    probe = make(**kw)
    cfg = PPOConfig(num_steps=16, epochs=2, minibatches=3, lr=3e-3, kl_coeff=kl_coeff)
    agents = [MTPPO(cfg, probe.obs_dim, 2, probe.single_action_space, seed=0, diagnostics_every=d) for d in (0, 1)]
    runner = Runner({**kw, "slots": list(range(6))}, {**agents[0].policy_spec}, 0)
    ro = runner.sample(16, agents[0].policy_state())
    plain, vmapped = (a.update(ro) for a in agents)
    assert "_diagnostics" in vmapped and "_diagnostics" not in plain
    assert plain["ppo/kl_coeff"] == vmapped["ppo/kl_coeff"]
    for k in ("loss/task", "loss/policy", "loss/value", "loss/entropy", "ppo/approx_kl", "ppo/clip_frac"):
        np.testing.assert_allclose(plain[k], vmapped[k], rtol=1e-4, atol=1e-6, err_msg=k)
    for p, q in zip(agents[0].net.parameters(), agents[1].net.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_image_encoder_reads_the_minigrid_view_and_learns_with_surgery(tmp_path):
    import torch

    from mtrl import checkpoint
    from mtrl.agents.networks import MiniGridCNN
    from mtrl.config import build_config
    from mtrl.train import train

    enc = MiniGridCNN(984 + 3)
    x = torch.zeros(5, 984 + 3)
    assert enc(x).shape == (5, 64 + 4 + 3)
    x2 = x.clone()
    x2[:, 7 * 20 * 3 + 5] = 1.0  # one cell of the view changes -> the CNN features change
    assert not torch.allclose(enc(x)[:, :64], enc(x2)[:, :64])
    run = train(build_config(["envs/minigrid-mt3.yaml", "agents/mtppo-pcgrad.yaml"],
                             ["obs=image", "envs_per_task=2", "ppo.num_steps=32", "total_steps=384",
                              f"run_dir={tmp_path / 'r'}"]))
    state = checkpoint.load(checkpoint.latest(run))
    assert any(k.startswith("encoders.0.conv") for k in state["agent"]["net"])


def test_image_obs_is_refused_where_there_is_no_minigrid_view():
    import pytest

    from mtrl.config import build_config
    from mtrl.errors import MtrlError

    with pytest.raises(MtrlError, match="obs: image is MiniGrid's 7x7 view through a CNN; 'reach-v3' is a metaworld"):
        build_config(["envs/reach4.yaml", "agents/mtppo.yaml"], ["obs=image"])
    with pytest.raises(MtrlError, match="obs: image works with algo=mtppo"):
        build_config(["envs/minigrid-mt3.yaml", "agents/mtppo-camrl.yaml"], ["obs=image"])


def test_update_on_a_rollout_far_from_the_policy_keeps_weights_finite():
    """A rollout whose behaviour log-probs are thousands of nats below the current policy's (as
    after MH-AIRL's behaviour-cloning warm start narrowed a Gaussian) overflowed exp(log-ratio) to
    inf and the gradient to NaN, which reached the weights; the clamped log-ratio keeps them finite."""
    kw = dict(taskset="metaworld/MT1:reach-v3", envs_per_task=2, seed=0)
    probe = make(**kw)
    agent = MTPPO(PPOConfig(num_steps=16, epochs=2, minibatches=2), probe.obs_dim, 1, probe.single_action_space, seed=0)
    ro = Runner({**kw, "slots": [0, 1]}, {**agent.policy_spec}, 0).sample(16, agent.policy_state())
    with torch.no_grad():
        agent.net.log_std.fill_(-4.0)  # the policy narrowed after the rollout was sampled
    ro["logp"] = ro["logp"] - 3000.0
    ro["rewards"] = ro["rewards"] - 5.0  # negative advantages: the unclipped branch of the objective
    out = agent.update(ro)
    assert all(torch.isfinite(p).all() for p in agent.net.parameters())
    assert np.all(np.isfinite(out["loss/policy"]))


def test_kl_penalty_adapts_its_weight_and_resumes():
    """The adaptive KL penalty (kl_coeff > 0): its weight grows where an update moved the policy
    more than 2 x kl_target, shrinks where less than half, survives state_dict, and kl_coeff 0 is
    plain PPO (bit for bit)."""
    kw = dict(taskset="custom", tasks=["MiniGrid-Empty-5x5-v0"], envs_per_task=4, seed=0)
    probe = make(**kw)
    runner = Runner({**kw, "slots": list(range(4))}, MTPPO(PPOConfig(), probe.obs_dim, 1,
                                                           probe.single_action_space).policy_spec, 0)

    def agent(**c):
        return MTPPO(PPOConfig(num_steps=32, **c), probe.obs_dim, 1, probe.single_action_space, seed=0)

    plain, zero = agent(), agent(kl_coeff=0.0, kl_target=0.5)
    ro = runner.sample(32, plain.policy_state())
    plain.update(ro)
    out = zero.update(ro)
    for p, q in zip(plain.net.parameters(), zero.net.parameters()):
        assert torch.equal(p, q)
    assert out["ppo/kl_coeff"] == 0.0
    big = agent(lr=1e-2, kl_coeff=0.2, kl_target=1e-6)  # any real update overshoots this target
    kl = float(big.update(ro)["ppo/approx_kl"])
    assert kl > 2e-6 and big.kl_coeff == 0.2 * 1.5
    small = agent(lr=1e-6, kl_coeff=0.2, kl_target=10.0)  # nothing moves by KL 5
    small.update(ro)
    assert small.kl_coeff == 0.1
    clone = agent(kl_coeff=0.2)
    clone.load_state_dict(big.state_dict())
    assert clone.kl_coeff == big.kl_coeff == 0.2 * 1.5
    off = agent(kl_coeff=0.0)  # resumed with the penalty turned off
    off.load_state_dict(big.state_dict())
    assert off.kl_coeff == 0.0
    on = agent(kl_coeff=0.4)  # resumed from a run without it: turned on at the configured weight
    on.load_state_dict(plain.state_dict())
    assert on.kl_coeff == 0.4


def test_kl_penalty_pulls_the_update_toward_the_old_policy():
    """With a large fixed-ish weight the penalised update moves the policy less (in KL) than the
    plain one on the same rollout."""
    kw = dict(taskset="custom", tasks=["MiniGrid-Empty-5x5-v0"], envs_per_task=4, seed=0)
    probe = make(**kw)
    plain = MTPPO(PPOConfig(num_steps=32, lr=3e-3, epochs=8), probe.obs_dim, 1, probe.single_action_space, seed=0)
    pen = MTPPO(PPOConfig(num_steps=32, lr=3e-3, epochs=8, kl_coeff=50.0), probe.obs_dim, 1,
                probe.single_action_space, seed=0)
    runner = Runner({**kw, "slots": list(range(4))}, plain.policy_spec, 0)
    ro = runner.sample(32, plain.policy_state())
    obs, tids = torch.as_tensor(ro["obs"]).flatten(0, 1), torch.as_tensor(ro["task_ids"]).flatten(0, 1)
    before = torch.log_softmax(plain.net.dist(obs, tids).logits, -1).detach()
    plain.update(ro)
    pen.update(ro)

    def kl(agent):
        after = torch.log_softmax(agent.net.dist(obs, tids).logits, -1)
        return float((before.exp() * (before - after)).sum(-1).mean().detach())

    assert kl(pen) < 0.5 * kl(plain), (kl(pen), kl(plain))


def test_kl_penalty_settings_are_checked():
    probe = make(taskset="custom", tasks=["MiniGrid-Empty-5x5-v0"], envs_per_task=1, seed=0)
    for bad in (dict(kl_coeff=-0.1), dict(kl_target=0.0), dict(kl_coeff=float("nan"))):
        with pytest.raises(ValueError, match="kl_coeff"):
            MTPPO(PPOConfig(**bad), probe.obs_dim, 1, probe.single_action_space)


def test_decoupled_objective_per_sample_matches_hand_computation():
    """Hilton et al. 2021, eq. 2: l^pg = -w min(r A, clip(r) A), r = pi / pi_prox, w = pi_prox / pi_beh;
    the KL term is w k3 against pi_prox."""
    from mtrl.agents.ppo import _ppo_per_sample

    cfg = PPOConfig(clip=0.2, vf_coef=0.0, ent_coef=0.0)
    logp = torch.log(torch.tensor([0.5, 0.5, 0.2]))
    prox = torch.log(torch.tensor([0.4, 0.6, 0.2]))
    beh = torch.log(torch.tensor([0.2, 0.6, 0.4]))
    adv = torch.tensor([1.0, -1.0, 2.0])
    zero = torch.zeros(3)
    w = (prox - beh).exp()  # 2, 1, 0.5
    loss, pg, _, ratio = _ppo_per_sample(logp, zero, zero, prox, adv, zero, cfg, kl_coeff=0.0, weight=w)
    torch.testing.assert_close(ratio, torch.tensor([1.25, 5 / 6, 1.0]))
    # sample 0: r = 1.25 > 1 + eps with A > 0, clipped to 1.2; sample 1: r = 5/6 inside the clip
    # range, A < 0: -min(-5/6, -5/6); sample 2: r = 1
    torch.testing.assert_close(pg, torch.tensor([-2.0 * 1.2, 1.0 * 5 / 6, -0.5 * 2.0]))
    torch.testing.assert_close(loss, pg)
    kl_loss, *_ = _ppo_per_sample(logp, zero, zero, prox, adv, zero, cfg, kl_coeff=3.0, weight=w)
    k3 = (ratio - 1) - (logp - prox)
    torch.testing.assert_close(kl_loss, pg + 3.0 * w * k3)


@pytest.mark.parametrize("diagnostics_every", [0, 1])
def test_decoupled_update_equals_plain_ppo_on_a_fresh_rollout_and_weights_a_stale_one(diagnostics_every):
    """On a rollout the current policy sampled, pi_prox = pi_beh: the decoupled update is plain
    PPO's (weights 1); on a stale rollout the weights differ from 1 and the update differs, on the
    plain and on the vmapped per-task (surgery) path alike."""
    kw = dict(taskset="custom", tasks=["MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-6x6-v0"], envs_per_task=2, seed=0)
    probe = make(**kw)

    def agent(**c):
        return MTPPO(PPOConfig(num_steps=16, epochs=2, minibatches=2, lr=3e-3, kl_coeff=0.2, **c), probe.obs_dim, 2,
                     probe.single_action_space, seed=0, diagnostics_every=diagnostics_every)

    plain, dec = agent(), agent(decoupled=True)
    runner = Runner({**kw, "slots": list(range(4))}, plain.policy_spec, 0)
    ro = runner.sample(16, plain.policy_state())
    a, b = plain.update(ro), dec.update(ro)
    assert abs(b["ppo/is_weight_mean"] - 1.0) < 1e-5 and b["ppo/is_weight_max"] < 1.0 + 1e-4
    assert "ppo/is_weight_mean" not in a
    for p, q in zip(plain.net.parameters(), dec.net.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    # one update later the same rollout is stale for both: the decoupled one clips around its own policy
    a2, b2 = plain.update(ro), dec.update(ro)
    assert b2["ppo/is_weight_max"] > 1.0 + 1e-3
    assert float(b2["ppo/clip_frac"]) < float(a2["ppo/clip_frac"])  # the clip is around pi_prox, not pi_beh
    assert all(torch.isfinite(p).all() for p in dec.net.parameters())


def test_decoupled_weight_scales_the_policy_gradient_on_both_paths():
    """Behaviour log-probs lowered by c make w = e^c on every sample: with no value or entropy
    term, one minibatch's gradient is e^c times the gradient with w = 1, and the plain and the
    vmapped per-task path take the same step on a stale rollout."""
    kw = dict(taskset="custom", tasks=["MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-6x6-v0"], envs_per_task=2, seed=0)
    probe = make(**kw)

    def agent(d=0, **c):
        cfg = PPOConfig(num_steps=16, epochs=1, minibatches=1, lr=1e-3, vf_coef=0.0, ent_coef=0.0, decoupled=True,
                        max_grad_norm=1e9, **c)
        return MTPPO(cfg, probe.obs_dim, 2, probe.single_action_space, seed=0, diagnostics_every=d)

    ref = agent()
    ro = Runner({**kw, "slots": list(range(4))}, ref.policy_spec, 0).sample(16, ref.policy_state())
    grads = []
    for c in (0.0, 0.5):
        a = agent()
        captured = {}
        orig = a.opt.step

        def step(a=a, captured=captured, orig=orig):
            captured.update({n: p.grad.clone() for n, p in a.net.named_parameters() if p.grad is not None})
            return orig()

        a.opt.step = step
        out = a.update({**ro, "logp": ro["logp"] - c})
        np.testing.assert_allclose(out["ppo/is_weight_mean"], np.exp(c), rtol=1e-4)
        grads.append(captured)
    head = [n for n in grads[0] if grads[0][n].abs().sum() > 0]
    assert head
    for n in head:
        torch.testing.assert_close(grads[1][n], np.exp(0.5) * grads[0][n], rtol=1e-4, atol=1e-7)
    stale = {**ro, "logp": ro["logp"] + np.random.default_rng(0).normal(0, 0.3, ro["logp"].shape).astype(np.float32)}
    plain, vmapped = agent(0, kl_coeff=0.2), agent(1, kl_coeff=0.2)
    plain.update(stale)
    vmapped.update(stale)
    for p, q in zip(plain.net.parameters(), vmapped.net.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
