"""Task schedulers: each one's weights against its formula on hand-made statistics, bad input,
state round trips; and in the training loop: uniform == no curriculum bit for bit, exact resume."""

import numpy as np
import pytest
import torch

from mtrl import checkpoint, curriculum
from mtrl.config import build_config
from mtrl.curriculum import TaskStats
from mtrl.errors import MtrlError
from mtrl.train import train

NAMES = ["a", "b", "c"]


def stats(success=None, new=None, score=None, sampled=None, iteration=1, T=3):
    nan = np.full(T, np.nan)
    return TaskStats(step=0, iteration=iteration, success=nan if success is None else np.asarray(success, float),
                     returns=nan, episodes=np.zeros(T, int), env_steps=np.zeros(T, int), new=new or {},
                     loss=nan, score=None if score is None else np.asarray(score, float),
                     sampled=None if sampled is None else np.asarray(sampled))


def eps_rows(successes):
    """Episode rows [return, success, length] with the given successes."""
    return np.array([[float(s), float(s), 10.0] for s in successes])


@pytest.mark.parametrize("bad, needle", [([1, -1, 1], "negative"), ([1, np.nan, 1], "non-finite"),
                                         ([0, 0, 0], "all-zero"), ([1, 1], "for 3 tasks")])
def test_check_weights_refuses_bad_vectors(bad, needle):
    with pytest.raises(MtrlError, match=needle):
        curriculum.check_weights(bad, 3)


def test_check_weights_normalises_a_good_vector():
    np.testing.assert_allclose(curriculum.check_weights([1, 0, 3], 3), [0.25, 0, 0.75])


def test_unknown_name_and_argument_list_valid_choices():
    with pytest.raises(MtrlError, match="valid curricula: 'uniform', 'success'"):
        curriculum.get("nope", NAMES)
    with pytest.raises(MtrlError, match="valid arguments: 'beta', 'rho'"):
        curriculum.get("plr", NAMES, temperature=1)
    with pytest.raises(MtrlError, match=r"rho must be in \[0.0, 1.0\]"):
        curriculum.get("plr", NAMES, rho=2)


def test_uniform_keeps_fixed_slots_or_resamples():
    assert curriculum.get("uniform", NAMES).weights() is None
    np.testing.assert_allclose(curriculum.get("uniform", NAMES, resample=True).weights(), [1 / 3] * 3)


def test_success_weights_follow_softmax_of_minus_success():
    s = curriculum.get("success", NAMES, tau=0.5, eps=0.3)
    assert s.weights() is None  # no statistics yet
    s.update(stats(success=[1.0, 0.0, np.nan]))  # NaN (no episode yet) counts as 0
    e = np.exp(-np.array([1.0, 0.0, 0.0]) / 0.5)
    np.testing.assert_allclose(s.weights(), 0.7 * e / e.sum() + 0.1)
    hot = curriculum.get("success", NAMES, tau=1e6, eps=0.0)
    hot.update(stats(success=[1.0, 0.0, 0.5]))
    np.testing.assert_allclose(hot.weights(), [1 / 3] * 3, atol=1e-6)


def test_learning_progress_is_abs_difference_of_emas():
    lp = curriculum.get("learning-progress", NAMES, fast=0.5, slow=0.1, eps=0.0)
    np.testing.assert_allclose(lp.weights(), [1 / 3] * 3)  # no progress anywhere: uniform
    lp.update(stats(new={0: eps_rows([0, 0]), 1: eps_rows([1]), 2: eps_rows([0])}))
    lp.update(stats(new={0: eps_rows([1, 1]), 1: eps_rows([0])}))  # 0 improves, 1 forgets, 2 unseen
    # task 0: f = 0 + .5 (1 - 0) = .5, l = .1 -> LP .4; task 1: f = .5, l = .9 -> LP .4; task 2: 0
    np.testing.assert_allclose(lp.progress(), [0.4, 0.4, 0.0])
    np.testing.assert_allclose(lp.weights(), [0.5, 0.5, 0.0])
    mixed = curriculum.get("learning-progress", NAMES, fast=0.5, slow=0.1, eps=0.3)
    mixed.load_state_dict(lp.state_dict())
    np.testing.assert_allclose(mixed.weights(), 0.7 * np.array([0.5, 0.5, 0.0]) + 0.1)
    with pytest.raises(MtrlError, match="smaller than fast"):
        curriculum.get("learning-progress", NAMES, fast=0.1, slow=0.2)


def test_plr_rank_priority_and_staleness():
    beta, rho = 0.5, 0.3
    plr = curriculum.get("plr", NAMES, beta=beta, rho=rho)
    plr.update(stats(score=[3.0, 1.0, 2.0], sampled=[5, 5, 5], iteration=1))
    h = (1 / np.array([1.0, 3.0, 2.0])) ** (1 / beta)
    # all sampled at iteration 1: no staleness yet, P_C uniform
    np.testing.assert_allclose(plr.weights(), (1 - rho) * h / h.sum() + rho / 3)
    plr.update(stats(score=[0.5, np.nan, np.nan], sampled=[5, 0, 0], iteration=4))  # only task 0 sampled
    h = (1 / np.array([3.0, 2.0, 1.0])) ** (1 / beta)  # scores now [0.5, 1, 2]
    stale = np.array([0.0, 3.0, 3.0])
    np.testing.assert_allclose(plr.weights(), (1 - rho) * h / h.sum() + rho * stale / stale.sum())


def test_plr_unscored_tasks_come_first():
    plr = curriculum.get("plr", NAMES, beta=0.1, rho=0.0)
    plr.update(stats(score=[1.0, 2.0, np.nan], sampled=[1, 1, 0], iteration=1))
    assert np.argmax(plr.weights()) == 2


def test_mastering_rate_moves_attention_to_the_target_once_the_stone_is_mastered():
    graph = {"a": ["b"]}  # c is a lone task
    mr = curriculum.get("mastering-rate", NAMES, task_graph=graph, window=4, eps=0.0)
    w0 = mr.weights()
    # nothing mastered: the target b is not learnable (ancestor mastery 0) and only gets a's d_succ share
    assert w0[0] > w0[1] and w0[2] > w0[1]
    att = mr.attention()
    pre_a = 1.0 * (0.5 * 0 + 0.5 * 1) * (1 - 0)  # Mast(Anc)=1, naLP=0, Mast=0, Mast(Succ b)=0
    np.testing.assert_allclose(att[0], pre_a * (1 - 0.05))
    np.testing.assert_allclose(att[1], pre_a * 0.05)
    mr.update(stats(new={0: eps_rows([1, 1, 1, 1]), 2: eps_rows([0, 0])}))
    w1 = mr.weights()
    assert w1[1] > w1[0]  # a mastered: b is learnable and a is no longer worth it
    np.testing.assert_allclose(mr.mastering(), [1.0, 0.0, 0.0])


@pytest.mark.parametrize("graph, needle", [(None, "needs a task graph"), ({"a": ["zzz"]}, "not in the task set"),
                                           ({"a": ["b"], "b": ["a"]}, "cycle")])
def test_mastering_rate_refuses_bad_graphs(graph, needle):
    with pytest.raises(MtrlError, match=needle):
        curriculum.get("mastering-rate", NAMES, task_graph=graph)


@pytest.mark.parametrize("name, kw", [("success", {}), ("learning-progress", {}), ("plr", {}),
                                      ("mastering-rate", {"task_graph": {"a": ["b", "c"]}})])
def test_state_dict_round_trip_continues_identically(name, kw):
    rng = np.random.default_rng(0)
    a, b = curriculum.get(name, NAMES, **kw), curriculum.get(name, NAMES, **kw)

    def step(s, i):
        new = {t: eps_rows(rng.random(2) < 0.5) for t in range(3) if rng.random() < 0.7}
        s.update(stats(success=rng.random(3), new=new, score=rng.random(3), sampled=[1, 1, int(i % 2)],
                       iteration=i))

    for i in range(1, 6):
        step(a, i)
    b.load_state_dict(a.state_dict())
    rng_state = rng.bit_generator.state
    step(a, 6)
    rng.bit_generator.state = rng_state
    step(b, 6)
    np.testing.assert_array_equal(a.weights(), b.weights())


# ---------------------------------------------------------------------------- in the training loop
ARGS = ["taskset=minigrid/MT3", "envs_per_task=2", "ppo.num_steps=32", "log_every=100"]


def _net(run_dir):
    return checkpoint.load(checkpoint.latest(run_dir))


def test_uniform_curriculum_equals_no_curriculum_bit_for_bit(tmp_path):
    plain = train(build_config([], [*ARGS, "total_steps=576", f"run_dir={tmp_path / 'plain'}"]))
    uni = train(build_config([], [*ARGS, "total_steps=576", "curriculum=uniform", f"run_dir={tmp_path / 'uni'}"]))
    a, b = _net(plain), _net(uni)
    assert b["curriculum"] == {} and b["task_weights"] is None
    for k, v in a["agent"]["net"].items():
        assert torch.equal(v, b["agent"]["net"][k]), k


def test_curriculum_resume_equals_uninterrupted(tmp_path):
    args = [*ARGS, "curriculum=learning-progress", "curriculum_args={fast: 0.5, slow: 0.1, eps: 0.1}",
            "checkpoint_every=192"]
    full = train(build_config([], [*args, "total_steps=960", f"run_dir={tmp_path / 'full'}"]))
    part = train(build_config([], [*args, "total_steps=576", f"run_dir={tmp_path / 'part'}"]))
    train(build_config([], ["total_steps=960"], base=build_config([], [*args, f"run_dir={part}"])), resume=part)
    a, b = _net(full), _net(part)
    assert a["step"] == b["step"] == 960
    assert a["task_weights"] is not None  # the scheduler did steer the runners
    np.testing.assert_array_equal(a["task_weights"], b["task_weights"])
    for k in ("fast", "slow", "seen"):
        np.testing.assert_array_equal(a["curriculum"][k], b["curriculum"][k])
    for k, v in a["agent"]["net"].items():
        assert torch.equal(v, b["agent"]["net"][k]), k


@pytest.mark.parametrize("name", ["uniform", "success", "learning-progress", "mastering-rate", "plr", "camrl"])
def test_every_curriculum_preset_trains_mtppo_and_mtsac(tmp_path, name):
    """Each scheduler from its preset (base: mtppo / mtsac), on MiniGrid and on Meta-World."""
    graph = "task_graph={Empty-5x5: [LavaGapS5]}"
    ppo = train(build_config(["envs/minigrid-mt3.yaml", f"agents/mtppo-{name}.yaml"],
                             ["total_steps=1536", "ppo.num_steps=64", "ppo.hidden=[16]", graph,
                              f"run_dir={tmp_path / 'ppo'}"]))
    sac = train(build_config(["envs/reach4.yaml", f"agents/mtsac-{name}.yaml"],
                             ["tasks=[reach-v3, drawer-close-v3]", "taskset=custom", "max_episode_steps=25",
                              "envs_per_task=1", "total_steps=400", "sac.hidden=[16]", "sac.learning_starts=100",
                              "sac.collect_steps=25", "sac.batch_per_task=8", "log_every=100",
                              "task_graph={reach-v3: [drawer-close-v3]}", f"run_dir={tmp_path / 'sac'}"]))
    for run, algo in ((ppo, "mtppo"), (sac, "mtsac")):
        state = _net(run)
        assert state["config"]["curriculum"] == name and state["config"]["algo"] == algo
        if name != "uniform":
            w = state["task_weights"]
            assert w is not None and np.isclose(w.sum(), 1.0) and (w >= 0).all(), (algo, w)
        if name == "plr":  # the learner's per-task scores reached the scheduler
            assert np.isfinite(state["curriculum"]["scores"]).all(), (algo, state["curriculum"])
            assert (state["curriculum"]["last_seen"] > 0).all()


# ---------------------------------------------------------------------------- CAMRL
from mtrl.agents import MTPPO, PPOConfig  # noqa: E402
from mtrl.curriculum.camrl import frank_wolfe, hard_rank, soft_rank  # noqa: E402


def test_soft_rank_approaches_hard_rank_as_sharpness_grows():
    x = torch.tensor([0.3, -1.0, 0.31, 2.0, 0.0], dtype=torch.float64)
    hard = torch.as_tensor(hard_rank(x.numpy()))
    np.testing.assert_array_equal(hard.numpy(), [3, 5, 2, 1, 4])
    errs = [float((soft_rank(x, k) - hard).abs().max()) for k in (1, 10, 100, 1000, 10000)]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-6
    np.testing.assert_allclose(hard_rank(np.array([1.0, 1.0, 0.0])), [1.5, 1.5, 3.0])  # ties share


def test_frank_wolfe_stays_feasible_and_finds_the_constrained_minimum():
    c = torch.tensor([0.3, 0.5, 0.9, -0.2], dtype=torch.float64)
    free = torch.tensor([True, True, False, True])

    def f(b):
        return (b - c).pow(2).sum()

    b = frank_wolfe(f, torch.zeros(4, dtype=torch.float64), free, radius=1.0, steps=200)
    assert (b >= 0).all() and b.sum() <= 1.0 + 1e-12 and b[2] == 0
    # the minimum over {b >= 0, sum <= 1, b_2 = 0} is (0.3, 0.5, 0, 0)
    np.testing.assert_allclose(b.numpy(), [0.3, 0.5, 0.0, 0.0], atol=0.02)
    tight = frank_wolfe(f, torch.zeros(4, dtype=torch.float64), free, radius=0.4, steps=200)
    assert tight.sum() <= 0.4 + 1e-12 and f(tight) < f(torch.zeros(4, dtype=torch.float64))


def _camrl_with_agent(T=3, **kw):
    agent = MTPPO(PPOConfig(hidden=[8], heads="ensemble"), 6, T, __import__("gymnasium").spaces.Discrete(3))
    sched = curriculum.get("camrl", NAMES[:T], task_graph={"a": ["b"]}, **kw)
    sched.attach(agent)
    return sched, agent


def test_camrl_frank_wolfe_lowers_the_composite_loss_and_keeps_b_feasible():
    sched, agent = _camrl_with_agent(radius=1.0, fw_steps=10)
    sched.last_success = np.array([0.9, 0.1, 0.4])
    sched.mode, sched.remaining, sched.order = "multi", [0, 1, 2], []
    W, last = sched._weights_matrix()
    drops = []
    for t in range(3):
        before = float(sched.composite(t, torch.as_tensor(sched.B[t]), W, last))
        free = torch.tensor([s != t for s in range(3)])
        b = frank_wolfe(lambda x, t=t: sched.composite(t, x, W, last), torch.as_tensor(sched.B[t]), free, 1.0, 10)
        after = float(sched.composite(t, b, W, last))
        assert after <= before and (b >= 0).all() and b.sum() <= 1.0 + 1e-9 and b[t] == 0
        drops.append(before - after)
    assert max(drops) > 0.1  # the steps do lower C (the best iterate alone could only keep it)
    sched._next_position()  # chooses a task, updates its row
    t = sched.order[0]
    assert sched.focus == t and t not in sched.remaining and sched.B[t, t] == 0
    assert (sched.B >= 0).all() and (sched.B.sum(1) <= 1.0 + 1e-9).all()


def test_camrl_mode_indicator_formula():
    sched, _ = _camrl_with_agent(time_scale=10.0, z_scale=40.0, band=1.0)
    sched.round = 5
    sched.last_loss = np.array([1.0, 1.0, 4.0])  # mean 2, std 1.414: task 2 beyond 1 sigma
    sched.loss_hist = [np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 5.0])]
    z = np.array([(1.0 - 2.0) / 1.0, 0.0, (4.0 - 4.0) / 1.0])  # task 1's history is flat: z = 0
    expect = (1 / 3 + np.exp(-5 / 10) + np.exp(-z.mean() / 40)) / 3
    assert expect < 1.0
    np.testing.assert_allclose(sched.mode_indicator(), expect)
    sched.last_loss = np.array([1.0, 1.0, 1.0])  # no spread across tasks: no outliers
    z = np.array([-1.0, 0.0, -3.0])
    np.testing.assert_allclose(sched.mode_indicator(), min((np.exp(-0.5) + np.exp(-z.mean() / 40)) / 3, 1))


def test_camrl_regulariser_pulls_the_focus_task_toward_earlier_tasks_only():
    sched, agent = _camrl_with_agent(reg_coef=0.5)
    sched.mode, sched.order, sched.focus = "multi", [0, 2], 2
    sched.B[0, 2] = 0.7
    W = agent.policy.task_matrix().detach()
    reg = sched.regulariser()
    np.testing.assert_allclose(float(reg.detach()), 0.5 * float((W[2] - 0.7 * W[0]).pow(2).sum()), rtol=1e-5)
    agent.opt.zero_grad()
    reg.backward()
    grads = {n: p.grad for n, p in agent.policy.named_parameters() if p.grad is not None}
    w0 = agent.policy.actor_trunk.layers[0].weight
    assert w0.grad[0].abs().sum() == 0 and w0.grad[1].abs().sum() == 0 and w0.grad[2].abs().sum() > 0
    assert grads
    sched.B[0, 2] = 0.0
    assert sched.regulariser() is None  # no incoming transfer: no pull toward zero


def test_camrl_on_a_shared_trunk_regularises_only_the_per_task_heads(tmp_path):
    agent = MTPPO(PPOConfig(hidden=[8], heads="multi"), 6, 3, __import__("gymnasium").spaces.Discrete(3))
    sched = curriculum.get("camrl", NAMES[:3], reg_coef=0.5)
    sched.attach(agent)
    W = agent.policy.task_matrix().detach()
    assert W.shape == (3, (8 * 3 + 3) + (8 + 1))  # actor head (in x out + bias) and critic head per task
    sched.mode, sched.order, sched.focus = "multi", [1, 0], 0
    sched.B[1, 0] = 0.6
    reg = sched.regulariser()
    np.testing.assert_allclose(float(reg.detach()), 0.5 * float((W[0] - 0.6 * W[1]).pow(2).sum()), rtol=1e-5)
    agent.opt.zero_grad()
    reg.backward()
    net = agent.policy
    assert all(p.grad is None or not p.grad.any() for p in net.actor_trunk.parameters())  # the trunk is shared
    g = net.actor_head.weight.grad.view(8, 3, 3)  # [in, task, out]
    assert g[:, 0].abs().sum() > 0 and not g[:, 1].any() and not g[:, 2].any()
    run = train(build_config(["envs/minigrid-mt3.yaml", "agents/mtppo-camrl-shared.yaml"],
                             ["total_steps=1536", "ppo.num_steps=64", "ppo.hidden=[16]", f"run_dir={tmp_path / 'r'}",
                              "curriculum_args={warmup_rounds: 0, iters_per_task: 1, time_scale: 1000}"]))
    state = _net(run)
    assert state["config"]["ppo"]["heads"] == "multi" and state["curriculum"]["round"] >= 1


def test_camrl_resume_equals_uninterrupted(tmp_path):
    args = [*ARGS, "curriculum=camrl", "ppo.heads=ensemble", "ppo.hidden=[16]", "checkpoint_every=192",
            "curriculum_args={warmup_rounds: 0, iters_per_task: 1, time_scale: 1000}"]
    full = train(build_config([], [*args, "total_steps=1920", f"run_dir={tmp_path / 'full'}"]))
    part = train(build_config([], [*args, "total_steps=960", f"run_dir={tmp_path / 'part'}"]))
    train(build_config([], ["total_steps=1920"], base=build_config([], [*args, f"run_dir={part}"])), resume=part)
    a, b = _net(full), _net(part)
    assert a["curriculum"]["round"] >= 3 and a["curriculum"]["B"].sum() > 0  # asymmetric rounds happened
    np.testing.assert_array_equal(a["curriculum"]["B"], b["curriculum"]["B"])
    assert a["curriculum"]["order"] == b["curriculum"]["order"]
    for k, v in a["agent"]["net"].items():
        assert torch.equal(v, b["agent"]["net"][k]), k


@pytest.mark.parametrize("ladder,edges", [("ladder", 4), ("ladder2", 4), ("ladder3", 8), ("crowd", 3), ("distract", 6), ("sink", 12),
                                          ("interfere", 12)])
def test_ladder_preset_graph_matches_its_tasks(ladder, edges):
    from mtrl.envs import get

    cfg = build_config([f"envs/minigrid-{ladder}.yaml", "agents/mtppo-mastering-rate.yaml"], [])
    names = [t.name for t in get(cfg.taskset).tasks()]
    sched = curriculum.get("mastering-rate", names, dict(cfg.task_graph))
    assert len(sched.edges) == edges
    if ladder == "distract":  # the edges lead from targets (the last three tasks) to harder tasks
        assert {i for i, _ in sched.edges} >= {len(names) - 3, len(names) - 2, len(names) - 1}
    elif ladder in ("sink", "interfere"):  # two chains from two roots; each of the last eight tasks is a child only
        children = {j for _, j in sched.edges}
        assert set(range(len(names) - 8, len(names))) <= children
        assert {i for i, _ in sched.edges} - children == {0, 3}  # the roots: DoorKey-6x6, Unlock
    elif ladder == "crowd":  # the edges end at the three targets, the last three tasks
        assert sorted({j for _, j in sched.edges}) == [len(names) - 3, len(names) - 2, len(names) - 1]
    else:
        assert all(j == i + 1 for i, j in sched.edges)  # each rung -> the next


def test_camrl_with_mtsac_regularises_the_per_task_actors():
    import gymnasium as gym

    from mtrl.agents import MTSAC, SACConfig

    T = 3
    agent = MTSAC(SACConfig(hidden=[8], heads="ensemble", batch_per_task=4, learning_starts=0), 5, T,
                  gym.spaces.Box(-1, 1, (2,)))
    sched = curriculum.get("camrl", NAMES, reg_coef=0.5)
    sched.attach(agent)
    sched.mode, sched.order, sched.focus = "multi", [1, 0], 0
    sched.B[1, 0] = 0.4
    W = agent.actor.task_matrix().detach()
    np.testing.assert_allclose(float(sched.regulariser().detach()), 0.5 * float((W[0] - 0.4 * W[1]).pow(2).sum()),
                               rtol=1e-5)
    rng = np.random.default_rng(0)
    batch = {"obs": rng.normal(size=(12, 5)).astype(np.float32), "actions": rng.uniform(-1, 1, (12, 2)).astype(
        np.float32), "rewards": rng.normal(size=12).astype(np.float32), "next_obs": rng.normal(size=(12, 5)).astype(
        np.float32), "terminated": np.zeros(12, np.float32), "task_ids": np.repeat(np.arange(T), 4)}
    before = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    out = agent.update(batch)
    assert out["loss/extra"] > 0
    assert not torch.equal(before["trunk.layers.0.weight"][0], agent.actor.state_dict()["trunk.layers.0.weight"][0])
    with pytest.raises(MtrlError, match="sac.heads=ensemble"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["curriculum=camrl"])


def test_task_linear_matches_one_layer_per_row():
    from mtrl.agents.networks import TaskLinear

    torch.manual_seed(0)
    layer = TaskLinear(5, 3, 4)
    for tids in (torch.tensor([2, 0, 2, 3, 1, 1, 0, 2]), torch.arange(4).repeat_interleave(3)):  # mixed; task-major
        x = torch.randn(len(tids), 5, requires_grad=True)
        y = layer(x, tids)
        ref = torch.stack([x[i] @ layer.weight[t] + layer.bias[t] for i, t in enumerate(tids.tolist())])
        torch.testing.assert_close(y, ref)
        gy = torch.autograd.grad(y.square().sum(), [x, layer.weight])
        gr = torch.autograd.grad(ref.square().sum(), [x, layer.weight])
        for a, b in zip(gy, gr):
            torch.testing.assert_close(a, b)


def test_resume_with_another_curriculum_is_refused(tmp_path):
    args = [*ARGS, "curriculum=success", "total_steps=192"]
    run = train(build_config([], [*args, f"run_dir={tmp_path / 'r'}"]))
    with pytest.raises(MtrlError, match="trained with curriculum 'success'"):
        train(build_config([], ["total_steps=384", "curriculum=plr"], base=build_config([], [*args, f"run_dir={run}"])),
              resume=run)
