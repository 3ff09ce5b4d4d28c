"""GAIL / AIRL reward models: the AIRL optimum, relabelling through the trainer's seam, labels,
checkpoint/resume, and bad input."""

from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.nn import functional as F

from mtrl import checkpoint
from mtrl.config import build_config
from mtrl.errors import MtrlError
from mtrl.imitation.adversarial import Discriminator
from mtrl.imitation.demos import make_demos
from mtrl.train import train


def test_airl_discriminator_optimum_recovers_the_expert_log_policy():
    """One state, three actions: expert pi_E = (.7, .2, .1), generator uniform. At the optimum of
    the logistic loss, D = pi_E / (pi_E + pi), i.e. exp f = pi_E: f recovers log pi_E."""
    torch.manual_seed(0)
    pi_e = torch.tensor([0.7, 0.2, 0.1])
    pi_g = torch.full((3,), 1 / 3)
    disc = Discriminator(obs_dim=1, act_dim=3, hidden=[16], kind="airl", gamma=0.9)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    s = torch.ones(4096, 1)
    done = torch.zeros(4096)
    for _ in range(1500):
        a_e = torch.multinomial(pi_e, 4096, replacement=True)
        a_g = torch.multinomial(pi_g, 4096, replacement=True)
        le = disc.logit(s, F.one_hot(a_e, 3).float(), s, done, pi_g[a_e].log())
        lg = disc.logit(s, F.one_hot(a_g, 3).float(), s, done, pi_g[a_g].log())
        loss = F.softplus(-le).mean() + F.softplus(lg).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        f = disc.f(torch.ones(3, 1), torch.eye(3), torch.ones(3, 1), torch.zeros(3))
    np.testing.assert_allclose(f.exp().numpy(), pi_e.numpy(), atol=0.03)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    root = tmp_path_factory.mktemp("demos")
    return {"labelled": make_demos("minigrid/MT3", 10, root)["path"],
            "unlabelled": make_demos("minigrid/MT3", 10, root, labels=False)["path"]}


ARGS = ["taskset=minigrid/MT3", "envs_per_task=2", "ppo.num_steps=32", "log_every=1",
        "imitation_args={hidden: [32], disc_batch: 64, disc_updates: 2}"]


@pytest.mark.parametrize("method, labels", [("gail", "labelled"), ("airl", "labelled"), ("airl", "unlabelled")])
def test_imitation_run_relabels_rewards_and_logs(tmp_path, demos, method, labels):
    run = train(build_config([], [*ARGS, f"imitation={method}", f"demos={demos[labels]}", "total_steps=768",
                                  f"run_dir={tmp_path / 'r'}"]))
    state = checkpoint.load(checkpoint.latest(run))
    assert state["reward_model"]["updates"] == 4
    first = state["reward_model"]["disc"]["g.0.weight"]
    assert first.shape[1] == 984 + (3 if labels == "labelled" else 0) + 7  # obs (+ one-hot) + one-hot action
    ea = EventAccumulator(str(run))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for tag in ["imitation/acc_expert", "imitation/acc_policy", "imitation/loss", "imitation/reward/Empty-5x5",
                "task/Empty-5x5/success"]:
        assert tag in tags, sorted(t for t in tags if "imitation" in t)


def test_relabel_replaces_the_learners_reward_and_keeps_the_env_reward(tmp_path, demos):
    from mtrl.train import Trainer

    cfg = build_config([], [*ARGS, "imitation=airl", f"demos={demos['labelled']}", f"run_dir={tmp_path}"])
    trainer = Trainer(cfg, tmp_path, None)
    try:
        rollout = trainer.pool.sample(32, trainer.agent.policy_state())
        env_r = rollout["rewards"].copy()
        out = trainer.relabel(rollout, "rollout")
        np.testing.assert_array_equal(out["env_rewards"], env_r)
        assert out["rewards"].shape == env_r.shape and not np.array_equal(out["rewards"], env_r)
        assert trainer.reward_log["imitation/reward"].shape == (3,)
    finally:
        trainer.pool.close()


def test_imitation_resume_equals_uninterrupted(tmp_path, demos):
    args = [*ARGS, "imitation=airl", f"demos={demos['labelled']}", "checkpoint_every=192"]
    full = train(build_config([], [*args, "total_steps=768", f"run_dir={tmp_path / 'full'}"]))
    part = train(build_config([], [*args, "total_steps=384", f"run_dir={tmp_path / 'part'}"]))
    train(build_config([], ["total_steps=768"], base=build_config([], [*args, f"run_dir={part}"])), resume=part)
    a, b = (checkpoint.load(checkpoint.latest(r)) for r in (full, part))
    for k, v in a["reward_model"]["disc"].items():
        assert torch.equal(v, b["reward_model"]["disc"][k]), k
    for k, v in a["agent"]["net"].items():
        assert torch.equal(v, b["agent"]["net"][k]), k


def test_bad_imitation_input_is_refused(tmp_path, demos):
    with pytest.raises(MtrlError, match="needs demonstrations: make them with `mtrl demos"):
        build_config(["envs/minigrid-mt3.yaml", "agents/gail.yaml"], [])
    with pytest.raises(MtrlError, match="not a demonstration dataset"):
        build_config(["envs/minigrid-mt3.yaml", "agents/airl.yaml"], [f"demos={tmp_path}"])
    with pytest.raises(MtrlError, match="are for tasks"):
        build_config(["envs/minigrid-mt5.yaml", "agents/airl.yaml"], [f"demos={demos['labelled']}"])
    with pytest.raises(MtrlError, match="no imitation method"):
        build_config(["envs/minigrid-mt3.yaml", "agents/mtppo.yaml"], [f"demos={demos['labelled']}"])
    with pytest.raises(MtrlError, match="valid methods: 'gail', 'airl'"):
        build_config(["envs/minigrid-mt3.yaml", "agents/mtppo.yaml"], ["imitation=bc", f"demos={demos['labelled']}"])
    with pytest.raises(MtrlError, match="no argument 'temperature'"):
        build_config(["envs/minigrid-mt3.yaml", "agents/gail.yaml"],
                     [f"demos={demos['labelled']}", "imitation_args={temperature: 1}"])
    assert Path(demos["labelled"]).is_dir()


def test_behaviour_cloning_learns_mt3_from_labelled_demos(tmp_path, demos):
    run = train(build_config(["envs/minigrid-mt3.yaml", "agents/bc.yaml"],
                             [f"demos={demos['labelled']}", "total_steps=2000", "envs_per_task=2",
                              f"run_dir={tmp_path / 'bc'}"]))
    state = checkpoint.load(checkpoint.latest(run))
    assert state["config"]["algo"] == "bc" and state["reward_model"] is None
    from mtrl.evaluate import evaluate_run

    res = evaluate_run(run, episodes=5, progress=False)
    assert res["mean_success_train"] >= 0.9  # three small rooms, 30 expert episodes, ~120 BC steps
    with pytest.raises(MtrlError, match="algo=bc needs demonstrations"):
        build_config(["envs/minigrid-mt3.yaml", "agents/bc.yaml"], [])
    with pytest.raises(MtrlError, match="set one_hot=false"):
        build_config(["envs/minigrid-mt3.yaml", "agents/bc.yaml"], [f"demos={demos['unlabelled']}"])
    build_config(["envs/minigrid-mt3.yaml", "agents/bc.yaml"], [f"demos={demos['unlabelled']}", "one_hot=false"])


# ---------------------------------------------------------------------------- MH-AIRL building blocks
def test_viterbi_matches_brute_force_and_recovers_planted_options():
    import itertools

    from mtrl.imitation.options import viterbi

    g = torch.Generator().manual_seed(0)
    T, K = 6, 2
    log_low = torch.log_softmax(torch.randn(T, K, generator=g), -1)
    log_high = torch.log_softmax(torch.randn(T, K + 1, K, generator=g), -1)
    best, best_lp = None, -np.inf
    for seq in itertools.product(range(K), repeat=T):
        lp = float(log_high[0, K, seq[0]] + log_low[0, seq[0]])
        lp += sum(float(log_high[t, seq[t - 1], seq[t]] + log_low[t, seq[t]]) for t in range(1, T))
        if lp > best_lp:
            best, best_lp = seq, lp
    z, lp = viterbi(log_low, log_high)
    assert tuple(z.tolist()) == best and float(lp) == pytest.approx(best_lp, abs=1e-5)

    # planted: 3 options, each strongly prefers its own action; sticky high level; switches at 20, 45
    K, A, T = 3, 3, 60
    planted = torch.tensor([0] * 20 + [2] * 25 + [1] * 15)
    pi_low = torch.full((K, A), 0.1 / (A - 1)) + torch.eye(K) * (0.9 - 0.1 / (A - 1))
    actions = torch.stack([torch.multinomial(pi_low[z], 1, generator=g)[0] for z in planted])
    log_low = pi_low.log()[:, actions].T  # [T, K]: log pi_L(a_t | z)
    stay = torch.full((K + 1, K), 0.1 / (K - 1))
    stay[:K] += torch.eye(K) * (0.9 - 0.1 / (K - 1))
    stay[K] = 1.0 / K
    z, _ = viterbi(log_low, stay.log()[None].expand(T, K + 1, K))
    assert float((z == planted).float().mean()) >= 0.9


def test_batched_viterbi_equals_viterbi_per_trajectory():
    from mtrl.imitation.options import viterbi, viterbi_batch

    g = torch.Generator().manual_seed(3)
    K, lengths = 3, torch.tensor([1, 7, 4, 12, 12])
    E, L = len(lengths), int(lengths.max())
    log_low = torch.log_softmax(torch.randn(E, L, K, generator=g), -1)
    log_high = torch.log_softmax(torch.randn(E, L, K + 1, K, generator=g), -1)
    z, lp = viterbi_batch(log_low, log_high, lengths)
    for e, n in enumerate(lengths.tolist()):
        ref, ref_lp = viterbi(log_low[e, :n], log_high[e, :n])
        assert torch.equal(z[e, :n], ref) and torch.allclose(lp[e], ref_lp), e
        assert not z[e, n:].any()


def test_context_posterior_separates_two_tasks_trajectories():
    from mtrl.imitation.options import ContextPosterior

    g = torch.Generator().manual_seed(1)

    def trajectories(n: int):
        ctx = torch.randint(0, 2, (n,), generator=g)
        lengths = torch.randint(10, 30, (n,), generator=g)
        drift = (ctx.float() * 2 - 1)[:, None, None] * 0.3  # task 0 drifts down, task 1 up
        steps = torch.randn(n, 30, 2, generator=g) * 0.5 + drift
        return steps.cumsum(1) * 0.1, lengths, ctx

    torch.manual_seed(0)
    post = ContextPosterior(2, 2, hidden=16)
    opt = torch.optim.Adam(post.parameters(), lr=1e-2)
    for _ in range(150):
        x, lengths, ctx = trajectories(64)
        loss = post.loss(x, lengths, ctx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, lengths, ctx = trajectories(200)
    with torch.no_grad():
        acc = float((post(x, lengths).argmax(-1) == ctx).float().mean())
    assert acc >= 0.9, acc


MH_ARGS = ["taskset=minigrid/MT3", "envs_per_task=2", "ppo.num_steps=32", "log_every=1", "ppo.heads=options",
           "ppo.options=3", "imitation=mhairl",
           "imitation_args={hidden: [32], disc_batch: 64, disc_updates: 2, posterior_updates: 2}"]


@pytest.mark.parametrize("labels", ["labelled", "unlabelled"])
def test_mhairl_run_infers_options_and_contexts_and_logs(tmp_path, demos, labels):
    run = train(build_config([], [*MH_ARGS, f"demos={demos[labels]}", "total_steps=768", f"run_dir={tmp_path / 'r'}"]))
    state = checkpoint.load(checkpoint.latest(run))
    rm = state["reward_model"]
    n_demo = 0
    from mtrl.imitation.demos import load_demos

    d = load_demos(demos[labels])
    n_demo = len(d.obs)
    assert rm["updates"] == 4 and rm["e_z"].shape == (n_demo,) and int(rm["e_z"].max()) < 3
    assert rm["e_ctx"].shape == (n_demo,) and int(rm["e_ctx"].max()) < 3
    if labels == "labelled":
        np.testing.assert_array_equal(rm["e_ctx"].numpy(), d.task_ids)
    ea = EventAccumulator(str(run))
    ea.Reload()
    assert "imitation/options" in ea.Tags()["images"]
    for tag in ["imitation/context_accuracy", "imitation/acc_expert", "imitation/reward/LavaGapS5"]:
        assert tag in ea.Tags()["scalars"]


@pytest.mark.parametrize("bc", [False, True])
def test_mhairl_resume_equals_uninterrupted(tmp_path, demos, bc):
    args = [*MH_ARGS, f"demos={demos['unlabelled']}", "checkpoint_every=192"]
    if bc:  # Option-BC warm start and BC steps beside the adversarial reward (their optimiser resumes too)
        i = next(k for k, a in enumerate(args) if a.startswith("imitation_args="))
        args[i] = args[i].replace("}", ", bc_init: 30, bc_estep: 10, bc_steps: 2}")
        assert build_config([], args).imitation_args.bc_init == 30
    full = train(build_config([], [*args, "total_steps=768", f"run_dir={tmp_path / 'full'}"]))
    part = train(build_config([], [*args, "total_steps=384", f"run_dir={tmp_path / 'part'}"]))
    train(build_config([], ["total_steps=768"], base=build_config([], [*args, f"run_dir={part}"])), resume=part)
    a, b = (checkpoint.load(checkpoint.latest(r)) for r in (full, part))
    for key in ("disc", "context_post", "option_post"):
        for k, v in a["reward_model"][key].items():
            assert torch.equal(v, b["reward_model"][key][k]), (key, k)
    assert torch.equal(a["reward_model"]["e_z"], b["reward_model"]["e_z"])
    if bc:
        sa, sb = a["reward_model"]["bc_opt"]["state"], b["reward_model"]["bc_opt"]["state"]
        assert sa and all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)
    for k, v in a["agent"]["net"].items():
        assert torch.equal(v, b["agent"]["net"][k]), k


def test_mhairl_bc_warm_start_fits_the_demos_and_restarts_ppo_ratios(tmp_path, demos):
    """Option-BC before the first adversarial update: the policy then picks the demos' actions, and
    the warm start's rollout is relabelled with the warm-started policy's log pi."""
    from mtrl.imitation.demos import load_demos

    run = train(build_config([], [*MH_ARGS[:-1], "imitation_args={hidden: [32], disc_batch: 64, disc_updates: 2, "
                                  "posterior_updates: 2, bc_init: 300}", f"demos={demos['labelled']}",
                                  "total_steps=192", f"run_dir={tmp_path / 'r'}"]))
    ea = EventAccumulator(str(run))
    ea.Reload()
    acc = ea.Scalars("imitation/bc_accuracy_init")[0].value
    state = checkpoint.load(checkpoint.latest(run))
    d = load_demos(demos["labelled"])
    import gymnasium as gym

    from mtrl.agents.networks import OptionActorCritic

    net = OptionActorCritic(d.obs.shape[1] + 3 + 4, 3, gym.spaces.MultiDiscrete([3, 7]), hidden=[64, 64], options=3)
    net.load_state_dict(state["agent"]["net"])
    # the low level under the Viterbi options, as the warm start fitted it
    rm = state["reward_model"]
    obs = torch.cat([torch.as_tensor(d.obs), F.one_hot(rm["e_ctx"], 3).float(),
                     F.one_hot(torch.full((len(d.obs),), 3), 4).float()], 1)
    with torch.no_grad():
        agree = float((net.low_out(obs, rm["e_z"]).argmax(-1) == torch.as_tensor(d.actions)).float().mean())
    assert acc >= 0.9 and agree >= 0.8, (acc, agree)
    assert len(ea.Scalars("ppo/approx_kl")) == 1  # one iteration: the warm start's own PPO update
    kl = ea.Scalars("ppo/approx_kl")[0].value
    assert abs(kl) < 0.1, kl  # PPO's ratios started at 1, not at the untrained policy's


def test_mhairl_needs_the_option_policy(demos):
    with pytest.raises(MtrlError, match="use ppo.heads=options with imitation=mhairl"):
        build_config(["envs/minigrid-mt3.yaml", "agents/mtppo.yaml"], ["imitation=mhairl", f"demos={demos['labelled']}"])
    with pytest.raises(MtrlError, match="has no argument 'reward'"):
        build_config(["envs/minigrid-mt3.yaml", "agents/mhairl.yaml"],
                     [f"demos={demos['labelled']}", "imitation_args={reward: logit}"])
    for bad, msg in (("bc_steps=-1", "bc_steps must be an integer >= 0"), ("bc_lr=abc", "bc_lr must be a number > 0"),
                     ("bc_estep=0", "bc_estep must be an integer >= 1")):
        with pytest.raises(MtrlError, match=msg):
            build_config(["envs/minigrid-mt3.yaml", "agents/mhairl.yaml"],
                         [f"demos={demos['labelled']}", f"imitation_args.{bad}"])


def test_more_bad_imitation_input_gets_one_line(tmp_path, demos):
    base = ["envs/minigrid-mt3.yaml"]
    with pytest.raises(MtrlError, match="steers by the environment's success"):
        build_config([*base, "agents/gail.yaml"], [f"demos={demos['labelled']}", "curriculum=success"])
    with pytest.raises(MtrlError, match="ppo.heads=options is for imitation=mhairl"):
        build_config([*base, "agents/bc.yaml"], [f"demos={demos['labelled']}", "ppo.heads=options"])
    with pytest.raises(MtrlError, match="one_hot=false, ppo.heads=single and ppo.arch=mlp"):
        build_config([*base, "agents/bc.yaml"], [f"demos={demos['unlabelled']}", "one_hot=false", "ppo.heads=multi"])
    with pytest.raises(MtrlError, match="one_hot=false, ppo.heads=single and ppo.arch=mlp"):  # per-task params
        build_config([*base, "agents/bc.yaml"], [f"demos={demos['unlabelled']}", "one_hot=false", "ppo.arch=film"])
    with pytest.raises(MtrlError, match="keep one_hot=true"):
        build_config([*base, "agents/mhairl.yaml"], [f"demos={demos['labelled']}", "one_hot=false"])
    with pytest.raises(MtrlError, match="list of layer widths"):
        build_config([*base, "agents/gail.yaml"], [f"demos={demos['labelled']}", "imitation_args={hidden: 32}"])
    broken = tmp_path / "broken"
    (broken / "data").mkdir(parents=True)
    (broken / "data" / "metadata.json").write_text("{not json")
    with pytest.raises(MtrlError, match="cannot read"):
        build_config([*base, "agents/gail.yaml"], [f"demos={broken}"])


def test_labelled_gail_without_one_hot_and_continuous_actions_are_clipped(tmp_path, demos):
    run = train(build_config([], [*ARGS, "imitation=gail", f"demos={demos['labelled']}", "one_hot=false",
                                  "total_steps=192", f"run_dir={tmp_path / 'r'}"]))
    assert checkpoint.load(checkpoint.latest(run))["reward_model"]["updates"] == 1
    import gymnasium as gym

    from mtrl.imitation.adversarial import AdversarialReward
    from mtrl.imitation.demos import load_demos

    d = load_demos(make_demos("custom", 1, tmp_path / "mw", tasks=["reach-v3"], max_episode_steps=20)["path"])
    model = AdversarialReward("gail", d, 1, 39, gym.spaces.Box(-1, 1, (4,)), hidden=[8])
    assert float(model._clip(torch.tensor([[3.0, -2.0, 0.5, 1.0]])).abs().max()) == 1.0
    assert (d.truncated.sum() == 1) and float(model.expert["done"].sum()) == 1.0  # the time limit counts as an end


@pytest.fixture(scope="module")
def mw_demos(tmp_path_factory):
    """Two Meta-World tasks, short episodes (scripted experts)."""
    root = tmp_path_factory.mktemp("mw")
    return make_demos("custom", 2, root, tasks=["reach-v3", "drawer-close-v3"], max_episode_steps=50)["path"]


def test_off_policy_gail_trains_on_collected_rounds_and_relabels_replay_batches(mw_demos):
    """GAIL for MT-SAC (DAC): replay batches train nothing and get the current discriminator's
    logit as their reward; collected rounds train it from a FIFO of recent policy transitions."""
    import gymnasium as gym

    from mtrl.imitation.adversarial import AdversarialReward
    from mtrl.imitation.demos import load_demos

    d = load_demos(mw_demos)
    model = AdversarialReward("gail", d, 2, 39, gym.spaces.Box(-1, 1, (4,)), hidden=[8], off_policy=True,
                              policy_buffer=10, disc_batch=8, disc_updates=3)
    rng = np.random.default_rng(0)

    def transitions(n):
        return {"obs": rng.normal(size=(n, 41)).astype(np.float32), "actions": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
                "rewards": np.zeros(n, np.float32), "next_obs": rng.normal(size=(n, 41)).astype(np.float32),
                "terminated": np.zeros(n, np.float32), "task_ids": np.repeat([0, 1], n // 2)}

    before = {k: v.clone() for k, v in model.disc.state_dict().items()}
    assert model.update(transitions(8), "batch") == {}
    assert all(torch.equal(v, model.disc.state_dict()[k]) for k, v in before.items())
    stats = model.update(transitions(6), "collected")
    model.update(transitions(6), "collected")
    assert "imitation/acc_expert" in stats and model.updates == 2 and model._fifo["obs"].shape[0] == 10
    assert not all(torch.equal(v, model.disc.state_dict()[k]) for k, v in before.items())
    batch = transitions(8)
    out = model.relabel(batch, "batch")
    with torch.no_grad():
        onehot = F.one_hot(torch.as_tensor(batch["task_ids"]), 2).float()  # labelled demos: the task id too
        want = model.disc.g(torch.cat([torch.as_tensor(batch["obs"][:, :39]), onehot,
                                       torch.as_tensor(batch["actions"])], 1))
    np.testing.assert_allclose(out["rewards"], want.squeeze(-1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["env_rewards"], batch["rewards"])
    with pytest.raises(MtrlError, match="built for MT-SAC but got 'rollout'"):
        model.update(transitions(4), "rollout")
    with pytest.raises(MtrlError, match="only imitation=gail"):
        AdversarialReward("airl", d, 2, 39, gym.spaces.Box(-1, 1, (4,)), off_policy=True)


def test_gail_mtsac_run_from_the_cli_preset_logs_and_resumes_its_fifo(tmp_path, mw_demos):
    args = ["taskset=custom", "tasks=[reach-v3, drawer-close-v3]", "max_episode_steps=50", f"demos={mw_demos}",
            "sac.hidden=[32]", "sac.learning_starts=200", "sac.collect_steps=50", "sac.batch_per_task=16",
            "imitation_args={hidden: [16], disc_batch: 32, disc_updates: 2, policy_buffer: 150}", "log_every=1"]
    run = train(build_config(["agents/gail-mtsac.yaml"], [*args, "total_steps=600", f"run_dir={tmp_path / 'r'}"]))
    rm = checkpoint.load(checkpoint.latest(run))["reward_model"]
    assert rm["updates"] == 6 and rm["fifo"]["obs"].shape == (150, 41)  # one update per 100-step round
    ea = EventAccumulator(str(run))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for tag in ["imitation/acc_expert", "imitation/reward/reach-v3", "task/reach-v3/success"]:
        assert tag in tags, sorted(t for t in tags if "imitation" in t)
    with pytest.raises(MtrlError, match="MT-SAC: gail only"):
        build_config(["agents/gail-mtsac.yaml"], [*args, "imitation=airl"])
