"""Option envs and the two-level option policy (hierarchical PPO on the extended MDP)."""

import numpy as np
import torch

from mtrl import checkpoint
from mtrl.config import build_config
from mtrl.envs import make
from mtrl.train import train


def test_option_env_appends_the_previous_option_and_resets_it_per_episode():
    env = make("minigrid/MT3", envs_per_task=1, seed=0, options=3, max_episode_steps=4)
    obs, _ = env.reset(seed=0)
    tail = obs[:, -4:]
    np.testing.assert_array_equal(tail, np.tile([0, 0, 0, 1], (3, 1)))  # index K: no option yet
    assert env.single_action_space.nvec.tolist() == [3, 7] and env.obs_dim == 984 + 3 + 4
    obs, _, term, trunc, info = env.step(np.array([[2, 0], [1, 1], [0, 0]]))
    np.testing.assert_array_equal(info["option"], [2, 1, 0])
    np.testing.assert_array_equal(obs[:, -4:].argmax(1), [2, 1, 0])
    for _ in range(3):
        obs, _, term, trunc, info = env.step(np.array([[1, 0], [1, 0], [1, 0]]))
    assert trunc.all()  # 4-step limit: the next episode starts without a previous option
    np.testing.assert_array_equal(obs[:, -4:].argmax(1), [3, 3, 3])
    np.testing.assert_array_equal(info["final_obs"][:, -4:].argmax(1), [1, 1, 1])


def test_option_policy_log_prob_is_high_times_low():
    from mtrl.agents.networks import OptionActorCritic

    env = make("minigrid/MT3", envs_per_task=1, seed=0, options=3)
    net = OptionActorCritic(env.obs_dim, 3, env.single_action_space, hidden=[16], options=3)
    obs, _ = env.reset(seed=0)
    obs = torch.as_tensor(obs)
    packed, logp, _ = net.act(obs, torch.arange(3), torch.Generator().manual_seed(0))
    z, a = packed[:, 0], packed[:, 1]
    ref = net.high_logp(obs).gather(1, z[:, None]).squeeze(1) + torch.log_softmax(net.low_out(obs, z), -1).gather(
        1, a[:, None]).squeeze(1)
    torch.testing.assert_close(logp, ref)
    torch.testing.assert_close(net(obs, torch.arange(3), packed)[0], ref)


def test_option_policy_trains_and_resumes_exactly(tmp_path):
    args = ["taskset=minigrid/MT3", "envs_per_task=2", "ppo.num_steps=32", "ppo.heads=options", "ppo.options=3",
            "checkpoint_every=192", "log_every=100"]
    full = train(build_config([], [*args, "total_steps=768", f"run_dir={tmp_path / 'full'}"]))
    part = train(build_config([], [*args, "total_steps=384", f"run_dir={tmp_path / 'part'}"]))
    train(build_config([], ["total_steps=768"], base=build_config([], [*args, f"run_dir={part}"])), resume=part)
    a, b = (checkpoint.load(checkpoint.latest(r)) for r in (full, part))
    for k, v in a["agent"]["net"].items():
        assert torch.equal(v, b["agent"]["net"][k]), k
    assert "high.0.0.weight" in a["agent"]["net"]
