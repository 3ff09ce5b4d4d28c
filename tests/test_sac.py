"""MT-SAC: per-task temperatures, per-task replay, learning signal, NaN handling, resume."""

import copy
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from mtrl import checkpoint
from mtrl.agents import MTSAC, SACConfig
from mtrl.buffers import PerTaskReplay
from mtrl.config import build_config
from mtrl.envs import make
from mtrl.errors import MtrlError
from mtrl.runners import Runner
from mtrl.train import train

BOX = gym.spaces.Box(-1, 1, (4,), np.float32)


def _batch(T=3, per_task=16, obs_dim=8, seed=0):
    r = np.random.default_rng(seed)
    n = T * per_task
    return {"obs": r.normal(size=(n, obs_dim)).astype(np.float32),
            "actions": r.uniform(-1, 1, (n, 4)).astype(np.float32),
            "rewards": r.normal(size=n).astype(np.float32),
            "next_obs": r.normal(size=(n, obs_dim)).astype(np.float32),
            "terminated": np.zeros(n, np.float32), "task_ids": np.repeat(np.arange(T), per_task)}


def test_buffer_wraparound_and_balanced_counts():
    buf = PerTaskReplay(num_tasks=2, capacity=5, obs_dim=1, action_dim=1)
    for k in range(7):  # task 0 gets 7 transitions (wraps), task 1 gets 2
        tids = np.array([0, 1]) if k < 2 else np.array([0])
        n = len(tids)
        buf.add(tids, np.full((n, 1), k, np.float32), np.zeros((n, 1)), np.zeros(n), np.zeros((n, 1)), np.zeros(n))
    assert buf.size.tolist() == [5, 2] and buf.pos.tolist() == [2, 2]
    assert sorted(buf.obs[0, :, 0].tolist()) == [2, 3, 4, 5, 6]  # the two oldest were overwritten
    b = buf.sample(7, np.random.default_rng(0))
    assert np.bincount(b["task_ids"]).tolist() == [7, 7]
    assert b["task_ids"].tolist() == [0] * 7 + [1] * 7  # task-major layout [T, per_task]
    assert set(b["obs"][7:, 0].tolist()) <= {0.0, 1.0}  # task 1 only samples its own data


def test_buffer_save_load_roundtrip(tmp_path):
    buf = PerTaskReplay(2, 4, 3, 2)
    r = np.random.default_rng(1)
    buf.add(np.array([0, 1, 1]), r.normal(size=(3, 3)), r.normal(size=(3, 2)), r.normal(size=3),
            r.normal(size=(3, 3)), np.array([0, 1, 0]))
    buf.save(tmp_path / "b.npz")
    other = PerTaskReplay(2, 4, 3, 2)
    other.load(tmp_path / "b.npz")
    for f in ("obs", "actions", "rewards", "next_obs", "terminated", "pos", "size"):
        np.testing.assert_array_equal(getattr(buf, f), getattr(other, f))
    with np.load(tmp_path / "b.npz") as data:  # only the filled part is written (2 of 4 slots)
        assert data["obs"].shape == (2, 2, 3)


def test_buffer_that_could_never_fit_in_memory_is_refused():
    import pytest

    from mtrl.errors import MtrlError

    with pytest.raises(MtrlError, match="lower sac.buffer_per_task"):
        PerTaskReplay(50, 10**9, 89, 4)  # ~2,700 TiB when full


def test_alpha_gradient_is_each_tasks_own_entropy_only():
    agent = MTSAC(SACConfig(hidden=[32, 32]), 8, 3, BOX, seed=0)
    a1, a2 = copy.deepcopy(agent), copy.deepcopy(agent)
    b1 = _batch()
    out = a1.update(b1)
    # d/d log_alpha_t of sum_t L_t = -(mean_t log pi + H_target) = entropy_t - H_target, own task only
    expected = torch.as_tensor(out["sac/entropy"]) - a1.target_entropy
    torch.testing.assert_close(a1.log_alpha.grad, expected, rtol=1e-5, atol=1e-5)
    b2 = copy.deepcopy(b1)
    b2["obs"][16:32] += 3.0  # change only task 1's states (hence its entropy)
    a2.update(b2)
    assert torch.equal(a1.log_alpha.grad[[0, 2]], a2.log_alpha.grad[[0, 2]])
    assert not torch.equal(a1.log_alpha.grad[1], a2.log_alpha.grad[1])


def test_alpha_min_floors_every_tasks_temperature():
    """A near-uniform policy (entropy far above -|A|) drives alpha down at Adam's rate; the floor
    holds it at alpha_min, the floorless learner falls below it."""
    b = _batch()
    free = MTSAC(SACConfig(hidden=[32, 32], alpha_lr=0.1), 8, 3, BOX, seed=0)
    floor = MTSAC(SACConfig(hidden=[32, 32], alpha_lr=0.1, alpha_min=0.2), 8, 3, BOX, seed=0)
    for _ in range(40):
        free.update(b)
        out = floor.update(b)
    assert torch.all(free.log_alpha.exp() < 0.1)
    torch.testing.assert_close(floor.log_alpha.exp(), torch.full((3,), 0.2))
    np.testing.assert_allclose(out["sac/alpha"], 0.2, rtol=1e-5)
    with pytest.raises(MtrlError, match="sac.alpha_min must be >= 0"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["sac.alpha_min=-1"])


def test_actor_ema_averages_for_evaluation_only_and_checkpoints():
    """actor_ema: the evaluation policy is theta_avg <- theta_avg + r (theta - theta_avg) after each
    actor step; training is exactly that of a run without it; the average is checkpointed, and a
    checkpoint without one starts it from the actor."""
    from mtrl.agents.device import cpu_policy

    b = _batch()
    plain = MTSAC(SACConfig(hidden=[32, 32]), 8, 3, BOX, seed=0)
    ema = MTSAC(SACConfig(hidden=[32, 32], actor_ema=0.1), 8, 3, BOX, seed=0)
    assert cpu_policy(plain) is plain.actor and cpu_policy(ema) is ema.actor_avg
    expected = [p.detach().clone() for p in ema.actor.parameters()]
    for _ in range(5):
        plain.update(b)
        ema.update(b)
        expected = [e + 0.1 * (p.detach() - e) for e, p in zip(expected, ema.actor.parameters())]
    for p, q in zip(plain.actor.parameters(), ema.actor.parameters()):
        assert torch.equal(p, q)  # the average does not touch training
    for e, a in zip(expected, ema.actor_avg.parameters()):
        torch.testing.assert_close(a, e)
    assert not torch.equal(next(ema.actor_avg.parameters()), next(ema.actor.parameters()))
    clone = MTSAC(SACConfig(hidden=[32, 32], actor_ema=0.1), 8, 3, BOX, seed=1)
    clone.load_state_dict(ema.state_dict())
    for a, c in zip(ema.actor_avg.parameters(), clone.actor_avg.parameters()):
        assert torch.equal(a, c)
    clone.load_state_dict(plain.state_dict())  # resumed from a run without the average
    for a, c in zip(plain.actor.parameters(), clone.actor_avg.parameters()):
        assert torch.equal(a, c)
    assert "actor_avg" not in plain.state_dict()
    with pytest.raises(MtrlError, match=r"sac.actor_ema must be in \[0, 1\]"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["sac.actor_ema=2"])


def test_losses_are_per_task_vectors():
    agent = MTSAC(SACConfig(hidden=[16]), 8, 3, BOX)
    out = agent.update(_batch())
    for k in ("loss/critic", "loss/actor", "loss/alpha", "sac/alpha", "sac/q"):
        assert out[k].shape == (3,), k


def test_nan_loss_skips_update_warns_and_counts():
    agent = MTSAC(SACConfig(hidden=[16]), 8, 3, BOX)
    before = copy.deepcopy(agent.critic.state_dict())
    b = _batch()
    b["rewards"][0] = np.nan
    with pytest.warns(UserWarning, match="non-finite MT-SAC critic loss"):
        out = agent.update(b)
    assert out["sac/nan_skips"] == 1 and agent.nan_skips == 1
    for k, v in agent.critic.state_dict().items():
        assert torch.equal(v, before[k])


def test_critic_loss_falls_on_two_metaworld_tasks():
    kw = dict(taskset="custom", tasks=["reach-v3", "push-v3"], seed=0, envs_per_task=2)
    probe = make(**kw)
    agent = MTSAC(SACConfig(hidden=[64, 64], batch_per_task=64, lr=1e-3), probe.obs_dim, 2,
                  probe.single_action_space, seed=0)
    runner = Runner({**kw, "slots": [0, 1, 2, 3]}, agent.policy_spec, 0)
    buf = PerTaskReplay(2, 10_000, probe.obs_dim, 4)
    d = runner.collect(400, random_actions=True)
    buf.add(d["task_ids"], d["obs"], d["actions"], d["rewards"], d["next_obs"], d["terminated"])
    rng = np.random.default_rng(0)
    losses = [agent.update(buf.sample(64, rng))["loss/critic"].mean() for _ in range(300)]
    assert np.mean(losses[-30:]) < 0.5 * np.mean(losses[:10]), (losses[:10], losses[-30:])


def test_sac_rejects_bad_action_spaces_and_batch():
    with pytest.raises(ValueError, match="continuous"):
        MTSAC(SACConfig(), 8, 2, gym.spaces.Discrete(3))
    with pytest.raises(ValueError, match="multiple of the 3 tasks"):
        MTSAC(SACConfig(batch_size=100), 8, 3, BOX)
    with pytest.raises(MtrlError, match="sac.batch_size=1280 is not a positive multiple of the 50 tasks"):
        build_config(["envs/mt50-published.yaml", "agents/mtsac.yaml"], ["sac.batch_size=1280"])


SAC_ARGS = ["taskset=custom", "tasks=[MountainCarContinuous-v0]", "algo=mtsac", "sac.hidden=[32,32]",
            "sac.learning_starts=200", "sac.collect_steps=25", "sac.batch_per_task=32", "checkpoint_every=300",
            "log_every=100", "sac.save_buffer=true", "envs_per_task=2"]


def test_sac_resume_equals_uninterrupted(tmp_path):
    warnings.simplefilter("ignore")
    full = train(build_config([], [*SAC_ARGS, "total_steps=1000", f"run_dir={tmp_path / 'full'}"]))
    part = train(build_config([], [*SAC_ARGS, "total_steps=600", f"run_dir={tmp_path / 'part'}"]))
    train(build_config([], ["total_steps=1000"], base=build_config([], [*SAC_ARGS, f"run_dir={part}"])), resume=part)
    a = checkpoint.load(checkpoint.latest(full))
    b = checkpoint.load(checkpoint.latest(part))
    assert a["step"] == b["step"] == 1000 and a["agent"]["updates"] == b["agent"]["updates"] > 0
    for net in ("actor", "critic", "critic_target"):
        for k, v in a["agent"][net].items():
            assert torch.equal(v, b["agent"][net][k]), (net, k)
    assert torch.equal(a["agent"]["log_alpha"], b["agent"]["log_alpha"])
    assert (part / "checkpoints" / "replay_000000001000.npz").is_file()


def _to_ensemble_layout(sd):
    """Inverse of upgrade_ensemble_critic: the earlier TwinQ's ``[2, in, out]`` layout."""
    n = sum(1 for k in sd if k.startswith("bodies.0.") and k.endswith(".weight"))
    out = {}
    for i in range(n):
        out[f"layers.{i}.weight"] = torch.stack([sd[f"bodies.{k}.{2 * i}.weight"].T for k in range(2)])
        out[f"layers.{i}.bias"] = torch.stack([sd[f"bodies.{k}.{2 * i}.bias"][None] for k in range(2)])
    out["head.weight"] = torch.stack([sd[f"heads.{k}.weight"].T for k in range(2)])
    out["head.bias"] = torch.stack([sd[f"heads.{k}.bias"][None] for k in range(2)])
    return out


def test_old_ensemble_critic_checkpoints_load():
    """Checkpoints from the ensemble critic (weights ``[2, in, out]``, forward ``baddbmm``) load
    into the two-stack critic with the same Q values and the same Adam moments."""
    from mtrl.agents.sac_networks import TwinQ, upgrade_ensemble_critic

    torch.manual_seed(0)
    old = {"layers.0.weight": torch.randn(2, 7, 16), "layers.0.bias": torch.randn(2, 1, 16),
           "layers.1.weight": torch.randn(2, 16, 16), "layers.1.bias": torch.randn(2, 1, 16),
           "head.weight": torch.randn(2, 16, 1), "head.bias": torch.randn(2, 1, 1)}
    obs, act = torch.randn(5, 5), torch.randn(5, 2)
    h = torch.cat([obs, act], -1).expand(2, -1, -1)
    for i in range(2):
        h = torch.relu(torch.baddbmm(old[f"layers.{i}.bias"], h, old[f"layers.{i}.weight"]))
    q_old = torch.baddbmm(old["head.bias"], h, old["head.weight"]).squeeze(-1)
    net = TwinQ(5, 2, 1, [16, 16], "single")
    net.load_state_dict(upgrade_ensemble_critic(old))
    torch.testing.assert_close(net(obs, act, torch.zeros(5, dtype=torch.long)), q_old)

    agent = MTSAC(SACConfig(hidden=[16, 16], batch_per_task=4), 5, 1, gym.spaces.Box(-1, 1, (2,), np.float32))
    r = np.random.default_rng(0)
    agent.update({"obs": r.normal(size=(4, 5)).astype(np.float32), "actions": r.uniform(-1, 1, (4, 2)).astype(np.float32),
                  "rewards": np.ones(4, np.float32), "next_obs": r.normal(size=(4, 5)).astype(np.float32),
                  "terminated": np.zeros(4, np.float32), "task_ids": np.zeros(4, np.int64)})
    s = agent.state_dict()
    names = [n for n, _ in agent.critic.named_parameters()]
    legacy = dict(s, critic=_to_ensemble_layout(s["critic"]), critic_target=_to_ensemble_layout(s["critic_target"]))
    st = s["critic_opt"]["state"]
    old_order = [f"layers.{i}.{p}" for i in range(2) for p in ("weight", "bias")] + ["head.weight", "head.bias"]
    moved = {k: _to_ensemble_layout({n: st[i][k] for i, n in enumerate(names)}) for k in ("exp_avg", "exp_avg_sq")}
    legacy["critic_opt"] = {"state": {j: {"step": st[0]["step"], **{k: moved[k][n] for k in moved}} for j, n in enumerate(old_order)},
                            "param_groups": [{**s["critic_opt"]["param_groups"][0], "params": list(range(6))}]}
    fresh = MTSAC(SACConfig(hidden=[16, 16], batch_per_task=4), 5, 1, gym.spaces.Box(-1, 1, (2,), np.float32), seed=1)
    fresh.load_state_dict(legacy)
    for (n, p), q in zip(agent.critic.named_parameters(), fresh.critic.parameters()):
        torch.testing.assert_close(p, q, msg=n)
    new_st = fresh.critic_opt.state_dict()["state"]
    for i in range(len(names)):
        torch.testing.assert_close(new_st[i]["exp_avg_sq"], st[i]["exp_avg_sq"])
    # and training goes on exactly as the original agent (Adam's per-parameter step counters intact)
    nb = {"obs": r.normal(size=(4, 5)).astype(np.float32), "actions": r.uniform(-1, 1, (4, 2)).astype(np.float32),
          "rewards": np.ones(4, np.float32), "next_obs": r.normal(size=(4, 5)).astype(np.float32),
          "terminated": np.zeros(4, np.float32), "task_ids": np.zeros(4, np.int64)}
    fresh.gen.set_state(agent.gen.get_state())
    agent.update(nb)
    fresh.update(nb)
    for p, q in zip(agent.critic.parameters(), fresh.critic.parameters()):
        torch.testing.assert_close(p, q)


def test_surgery_path_with_mean_matches_plain_updates():
    """MT-SAC's vmapped per-task path (forced by diagnostics) with ``mean`` follows the plain
    backward path: same critic and actor after several updates, same logged losses."""
    T, n, D, A = 3, 8, 6, 2
    r = np.random.default_rng(0)
    batches = [{"obs": r.normal(size=(T * n, D)).astype(np.float32),
                "actions": r.uniform(-1, 1, (T * n, A)).astype(np.float32),
                "rewards": r.normal(size=T * n).astype(np.float32), "next_obs": r.normal(size=(T * n, D)).astype(np.float32),
                "terminated": np.zeros(T * n, np.float32), "task_ids": np.repeat(np.arange(T), n)} for _ in range(4)]
    cfg = SACConfig(hidden=[16, 16], batch_per_task=n)
    agents = [MTSAC(cfg, D, T, gym.spaces.Box(-1, 1, (A,), np.float32), seed=0, diagnostics_every=d) for d in (0, 1)]
    outs = [[a.update(b) for b in batches] for a in agents]
    assert "_diagnostics/critic" in outs[1][-1] and "_diagnostics/critic" not in outs[0][-1]
    every2 = MTSAC(cfg, D, T, gym.spaces.Box(-1, 1, (A,), np.float32), seed=0, diagnostics_every=2)
    logged = ["_diagnostics/critic" in every2.update(b) for b in batches]  # the plain path counts too
    assert logged == [True, False, True, False]
    for k in ("loss/critic", "loss/actor", "sac/entropy"):
        np.testing.assert_allclose(outs[0][-1][k], outs[1][-1][k], rtol=1e-5, atol=1e-6, err_msg=k)
    for net in ("critic", "actor"):
        for p, q in zip(getattr(agents[0], net).parameters(), getattr(agents[1], net).parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_two_hot_keeps_the_target_mean_and_clips_to_the_support():
    from mtrl.agents.sac_networks import two_hot

    support = torch.linspace(-10, 10, 101)
    y = torch.tensor([-10.0, -3.337, 0.0, 0.05, 7.91, 10.0, 25.0, -40.0])
    p = two_hot(y, support)
    assert torch.allclose(p.sum(-1), torch.ones(8)) and (p >= 0).all() and ((p > 0).sum(-1) <= 2).all()
    assert torch.allclose((p * support).sum(-1), y.clamp(-10, 10), atol=1e-5)


@pytest.mark.parametrize("recipe", [
    {"critic": "bronet", "critic_width": 64, "critic_blocks": 1},
    {"critic_loss": "categorical", "bins": 51, "v_min": -5.0, "v_max": 5.0, "target": "mean"},
    {"task_embedding": 8, "weight_decay": 0.01, "heads": "multi"},
    {"precision": "bf16"},
    {"critic_layer_norm": True},
])
@pytest.mark.parametrize("surgery", ["mean", "pcgrad"])
def test_sac_recipes_learn_a_fixed_batch_with_and_without_surgery(recipe, surgery):
    _learn_fixed_batch(recipe, surgery)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_per_task_layer_norm_critics_learn_a_fixed_batch(precision):
    """agents/mtsac-fast.yaml's per-task networks with sac.critic_layer_norm (nothing shared: no surgery)."""
    _learn_fixed_batch({"critic_layer_norm": True, "heads": "ensemble", "precision": precision}, "mean")


def _learn_fixed_batch(recipe: dict, surgery: str) -> None:
    T = 3
    cfg = SACConfig(hidden=[32, 32], batch_per_task=16, lr=1e-3, **recipe)
    agent = MTSAC(cfg, 8 + T, T, BOX, seed=0, surgery=surgery)
    rng = np.random.default_rng(0)
    n = 16 * T
    batch = {"obs": rng.normal(size=(n, 8 + T)).astype(np.float32), "actions": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
             "rewards": (np.repeat([0.1, 1.0, 3.0], 16)).astype(np.float32),
             "next_obs": rng.normal(size=(n, 8 + T)).astype(np.float32), "terminated": np.ones(n, np.float32),
             "task_ids": np.repeat(np.arange(T), 16)}
    outs = [agent.update(batch) for _ in range(300)]
    q = outs[-1]["sac/q"]
    assert np.all(np.isfinite(q)) and agent.nan_skips == 0
    np.testing.assert_allclose(q, [0.1, 1.0, 3.0], atol=0.2)  # terminal transitions: Q -> r per task
    assert outs[-1]["loss/critic"].shape == (T,)


@pytest.mark.parametrize("heads", ["single", "ensemble"])
def test_layer_norm_critic_is_scale_invariant_per_layer(heads):
    """h = relu(LN(W x + b)): scaling the first layer (W, b) by c > 0 (one task's, in the
    ensemble) leaves Q unchanged; without the norm the same weights give another function.
    (Learning a fixed batch: test_sac_recipes_learn_a_fixed_batch_with_and_without_surgery.)"""
    from mtrl.agents.sac_networks import TwinQ

    T, obs_dim = 3, 5
    torch.manual_seed(0)
    q = TwinQ(obs_dim, 4, T, [16, 16], heads, layer_norm=True)
    x, a = torch.randn(12, obs_dim), torch.rand(12, 4) * 2 - 1
    tids = torch.arange(T).repeat_interleave(4)
    before = q(x, a, tids)
    with torch.no_grad():
        for body in q.bodies:
            if heads == "ensemble":  # TaskMLP: [T, in, out] weights
                body.layers[0].weight[1] *= 7.0
                body.layers[0].bias[1] *= 7.0
            else:
                assert isinstance(body[1], torch.nn.LayerNorm)
                body[0].weight *= 7.0
                body[0].bias *= 7.0
    torch.testing.assert_close(q(x, a, tids), before, rtol=1e-4, atol=1e-5)
    plain = TwinQ(obs_dim, 4, T, [16, 16], heads)
    plain.load_state_dict(q.state_dict()) if heads == "ensemble" else None  # same weights, no LN
    if heads == "ensemble":
        assert not torch.allclose(plain(x, a, tids), before)  # the norm changes the function
    with pytest.raises(MtrlError, match="critic_layer_norm is built for the MLP trunks"):
        TwinQ(obs_dim, 4, T, [16], "single", trunk="softmod", layer_norm=True)
    with pytest.raises(ValueError, match="bronet has its own LayerNorms"):
        TwinQ(obs_dim, 4, T, [16], "single", arch="bronet", layer_norm=True)


@pytest.mark.parametrize("overrides, message", [
    (["sac.critic_layer_norm=true", "sac.critic=bronet"], "bronet has its own LayerNorms"),
    (["sac.critic_layer_norm=true", "sac.arch=softmod"], "not sac.arch='softmod'"),
    (["sac.arch_args={layer_norm: true}"], "takes no option 'layer_norm'"),
])
def test_layer_norm_critic_bad_combinations_are_refused_at_config_time(overrides, message):
    with pytest.raises(MtrlError, match=message):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], overrides)
    build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["sac.critic_layer_norm=true", "sac.arch=multihead"])


def test_bf16_keeps_weights_heads_and_losses_in_float32_and_learns_per_task_networks():
    """precision=bf16: the GEMMs run in bfloat16, but weights, optimiser moments, the output layers
    (values of hundreds resolved to float32, not to bfloat16's ~0.4%) and the losses stay float32."""
    from mtrl.agents.precision import autocast

    T = 3
    cfg = SACConfig(hidden=[32, 32], batch_per_task=16, lr=1e-3, heads="ensemble", precision="bf16")
    agent = MTSAC(cfg, 8 + T, T, BOX, seed=0)
    batch = _batch(T, 16, 8 + T)
    batch.update(rewards=np.repeat([0.1, 1.0, 3.0], 16).astype(np.float32), terminated=np.ones(48, np.float32))
    with autocast("bf16"):
        obs, tids = torch.as_tensor(batch["obs"]), torch.as_tensor(batch["task_ids"])
        assert agent.critic.bodies[0](torch.cat([obs, torch.as_tensor(batch["actions"])], -1), tids).dtype == torch.bfloat16
        assert agent.critic(obs, torch.as_tensor(batch["actions"]), tids).dtype == torch.float32
        assert all(t.dtype == torch.float32 for t in agent.actor(obs, tids, agent.gen))
    outs = [agent.update(batch) for _ in range(300)]
    assert all(p.dtype == torch.float32 for p in [*agent.actor.parameters(), *agent.critic.parameters()])
    assert all(v.dtype == torch.float32 for st in agent.critic_opt.state.values() for v in st.values() if v.ndim)
    assert outs[-1]["loss/critic"].dtype == np.float32 and agent.nan_skips == 0
    np.testing.assert_allclose(outs[-1]["sac/q"], [0.1, 1.0, 3.0], atol=0.2)  # each task's own network
    with pytest.raises(MtrlError, match="unknown sac.precision 'fp16'; .*valid choices: 'fp32', 'bf16', 'auto'"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["sac.precision=fp16"])


def test_task_embedding_is_task_specific_and_reaches_the_runner_policy():
    from mtrl.agents import build_policy
    from mtrl.surgery.apply import task_specific_names

    agent = MTSAC(SACConfig(hidden=[16], task_embedding=4), 6, 2, BOX, seed=0)
    assert "embed.table" in task_specific_names(agent.actor) and "embed.table" in task_specific_names(agent.critic)
    runner_policy = build_policy(agent.policy_spec)
    runner_policy.load_state_dict(agent.policy_state())
    obs = torch.zeros(2, 6)
    a, _ = runner_policy(obs, torch.tensor([0, 1]), deterministic=True)
    assert not torch.allclose(a[0], a[1])  # same observation, different task embedding


def test_bad_sac_recipe_names_are_one_line_errors():
    with pytest.raises(MtrlError, match="unknown sac.critic 'resnet'; did you mean 'bronet'. valid choices: 'mlp', 'bronet'"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["sac.critic=resnet"])


def test_categorical_critic_skips_a_nan_target_instead_of_crashing():
    agent = MTSAC(SACConfig(hidden=[16], batch_per_task=4, critic_loss="categorical"), 6, 2, BOX, seed=0)
    rng = np.random.default_rng(0)
    batch = {"obs": rng.normal(size=(8, 6)).astype(np.float32), "actions": rng.uniform(-1, 1, (8, 4)).astype(np.float32),
             "rewards": np.full(8, np.nan, np.float32), "next_obs": rng.normal(size=(8, 6)).astype(np.float32),
             "terminated": np.zeros(8, np.float32), "task_ids": np.repeat([0, 1], 4)}
    with pytest.warns(UserWarning, match="non-finite MT-SAC critic loss"):
        agent.update(batch)
    assert agent.nan_skips == 1


def test_sac_target_bootstraps_through_time_limits_and_not_through_termination(monkeypatch):
    """``terminated`` (a real end) cuts the bootstrap; a time-limit truncation is stored with
    terminated = 0 (runners), so its target keeps gamma * (Q' - alpha log pi')."""
    agent = MTSAC(SACConfig(hidden=[16], batch_per_task=2, gamma=0.9), 6, 1, BOX, seed=0)
    seen = {}
    monkeypatch.setattr(agent, "_critic_step", lambda obs, act, tids, y, out: seen.setdefault("y", y) is None)
    batch = {"obs": np.zeros((2, 6), np.float32), "actions": np.zeros((2, 4), np.float32),
             "rewards": np.array([1.0, 1.0], np.float32), "next_obs": np.ones((2, 6), np.float32),
             "terminated": np.array([1.0, 0.0], np.float32), "task_ids": np.zeros(2, np.int64)}
    agent.update(batch)
    y = seen["y"]
    assert y[0] == 1.0  # terminal: the reward alone
    with torch.no_grad():  # same next observation and noise stream: recompute the bootstrap value
        agent.gen.manual_seed(0 + 4242)
        na, nlogp = agent.actor(torch.ones(2, 6), torch.zeros(2, dtype=torch.long), agent.gen)
        q = agent.critic_target(torch.ones(2, 6), na, torch.zeros(2, dtype=torch.long)).min(0).values
        expect = 1.0 + 0.9 * (q - agent.log_alpha.exp()[0] * nlogp)
    assert torch.allclose(y[1], expect[1], atol=1e-5) and abs(float(y[1]) - 1.0) > 1e-3


def test_precision_auto_picks_bf16_only_on_a_cpu_with_bfloat16_instructions(monkeypatch):
    from mtrl.agents import precision

    assert precision.cpu_has_bf16("processor: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 sse\n")
    assert precision.cpu_has_bf16("flags : fpu amx_bf16 amx_tile\n")
    assert not precision.cpu_has_bf16("flags : fpu avx2 avx512f\n")
    for has, want in [(True, "bf16"), (False, "fp32")]:
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda has=has: has)
        assert precision.resolve("auto") == want and precision.resolve("fp32") == "fp32"
        assert MTSAC(SACConfig(hidden=[8], precision="auto"), 4, 2, BOX, seed=0).precision == want
        assert precision.resolve("auto", "cuda") == "fp32"  # a GPU learner: fp32 was faster (BENCHMARKS.md)


def test_learners_use_fused_adam_and_load_state_written_without_it():
    """mtrl.agents.optim: fused Adam (one kernel per step); a checkpoint written with PyTorch's loop
    Adam (earlier mtrl) loads and the next update matches one taken with the loop implementation."""
    from mtrl.agents import MTPPO, PPOConfig

    T = 2
    agent = MTSAC(SACConfig(hidden=[16]), 6 + T, T, BOX, seed=0)
    assert all(o.defaults.get("fused") for o in (agent.actor_opt, agent.critic_opt, agent.alpha_opt))
    assert MTPPO(PPOConfig(hidden=[8]), 5, 2, gym.spaces.Discrete(3), seed=0).opt.defaults.get("fused")
    old = MTSAC(SACConfig(hidden=[16]), 6 + T, T, BOX, seed=0)
    for name in ("actor_opt", "critic_opt", "alpha_opt"):  # the earlier, unfused optimisers
        o = getattr(old, name)
        setattr(old, name, torch.optim.Adam([p for g in o.param_groups for p in g["params"]], lr=o.defaults["lr"]))
    batch = _batch(T, 8, 6 + T)
    for _ in range(3):
        old.update(batch)
    agent.load_state_dict(copy.deepcopy(old.state_dict()))
    assert all(g["fused"] for o in (agent.actor_opt, agent.critic_opt, agent.alpha_opt) for g in o.param_groups)
    old.update(batch)
    agent.update(batch)
    for a, b in zip(agent.critic.parameters(), old.critic.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
