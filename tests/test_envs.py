"""Task sets build and step with their declared spaces, one-hots and success flags."""

import gymnasium as gym
import numpy as np
import pytest

import mtrl.envs as E
from mtrl.envs.tasksets import names
from mtrl.errors import MtrlError


def _check_steps(env: E.MultiTaskVectorEnv, steps: int = 5) -> None:
    obs, info = env.reset()
    assert obs.shape == (env.num_envs, env.obs_dim) and obs.dtype == np.float32
    assert env.observation_space.shape == obs.shape
    if env.one_hot:
        onehot = obs[:, env.raw_dim:]
        assert np.array_equal(onehot.argmax(1), env.task_ids) and np.all(onehot.sum(1) == 1)
    for _ in range(steps):
        a = env.action_space.sample()
        assert env.action_space.contains(a)
        obs, r, term, trunc, info = env.step(a)
        assert obs.shape == (env.num_envs, env.obs_dim)
        assert r.shape == term.shape == trunc.shape == (env.num_envs,)
        assert set(np.unique(info["success"])) <= {0.0, 1.0}
        assert info["task_id"].shape == (env.num_envs,)


@pytest.mark.parametrize("name", ["minigrid/MT5", "minigrid/MT3", "metaworld/MT1:reach-v3", "metaworld/MT10",
                                  "metaworld/reach4"])
def test_taskset_builds_and_steps(name):
    env = E.make(name, seed=0)
    assert env.num_envs == len(E.get(name).train)
    _check_steps(env)
    if name.startswith("minigrid"):
        assert env.single_action_space == gym.spaces.Discrete(7)
    else:
        assert env.single_action_space == gym.spaces.Box(-1, 1, (4,), np.float32)
        assert env.raw_dim == 39
    env.close()


@pytest.mark.parametrize("name,n_train,n_test", [("metaworld/MT25", 25, 0), ("metaworld/MT50", 50, 0),
                                                 ("metaworld/ML10", 10, 5), ("metaworld/ML45", 45, 5)])
def test_large_sets_have_their_tasks_and_step(name, n_train, n_test):
    ts = E.get(name)
    assert len(ts.train) == n_train and len(ts.test) == n_test
    assert not set(t.name for t in ts.train) & set(t.name for t in ts.test)
    # Build only two slots (first and last task): the full set is built the same way per slot.
    env = E.make(name, seed=0, slots=[0, n_train - 1])
    assert env.obs_dim == 39 + n_train
    _check_steps(env, 3)
    if n_test:
        test_env = E.make(name, seed=0, split="test", one_hot=False, slots=[0])
        assert test_env.obs_dim == 39 and test_env.task_names == [t.name for t in ts.test]
        obs, _ = test_env.reset()
        assert np.all(obs[0, -3:] == 0), "ML sets hide the goal"
        _check_steps(test_env, 3)


def test_minigrid_success_when_goal_reached():
    env = E.make("custom", tasks=["MiniGrid-Empty-5x5-v0"], seed=0)
    env.reset()
    # Empty-5x5: start at (1, 1) facing east, goal at (3, 3): forward x2, turn right, forward x2.
    succ = []
    for a in [2, 2, 1, 2, 2]:
        _, r, term, _, info = env.step(np.array([a]))
        succ.append(info["success"][0])
    assert succ == [0, 0, 0, 0, 1.0] and term[0] and r[0] > 0
    assert info["_episode"][0] and info["episode"]["success"][0] == 1.0 and info["episode"]["l"][0] == 5


def test_metaworld_success_with_scripted_expert():
    from metaworld.policies import ENV_POLICY_MAP

    env = E.make("metaworld/MT1:reach-v3", seed=0)
    obs, _ = env.reset()
    expert = ENV_POLICY_MAP["reach-v3"]()
    any_success = False
    for _ in range(200):
        obs, _, _, _, info = env.step(expert.get_action(obs[0, :39].astype(np.float64))[None])
        any_success |= bool(info["success"][0])
    assert any_success


def test_goal_resampled_every_reset():
    env = E.make("metaworld/MT1:reach-v3", seed=0, max_episode_steps=3)
    obs, _ = env.reset()
    goals = {tuple(np.round(obs[0, 36:39], 4))}
    for _ in range(5 * 3):
        obs, *_ = env.step(np.zeros((1, 4)))
        goals.add(tuple(np.round(obs[0, 36:39], 4)))
    assert len(goals) >= 3


def test_weights_change_sampling():
    env = E.make("minigrid/MT3", envs_per_task=2, seed=0, max_episode_steps=5)
    env.reset()
    assert sorted(env.task_ids.tolist()) == [0, 0, 1, 1, 2, 2]
    env.set_task_weights([0.0, 0.0, 1.0])
    counts = np.zeros(3)
    for _ in range(30):
        _, _, _, _, info = env.step(env.action_space.sample())
        counts += np.bincount(info["task_id"], minlength=3)
    assert np.all(env.task_ids == 2)
    assert counts[2] > counts[0] + counts[1]
    env.set_task_weights([1.0, 1.0, 0.0])
    for _ in range(10):
        _, _, _, _, info = env.step(env.action_space.sample())
    assert set(env.task_ids.tolist()) <= {0, 1}
    with pytest.raises(MtrlError, match="task weights"):
        env.set_task_weights([1.0, -1.0, 0.0])


def test_task_share_steps_gives_each_task_its_weight_of_env_steps():
    """Random play on MT3: LavaGap episodes end early in the lava, so drawing each episode from the
    weights ('episodes') gives LavaGap fewer steps than its weight; 'steps' keeps slots, hence
    env steps, in proportion."""
    w = np.array([0.5, 0.25, 0.25])
    share = {}
    for mode in ("episodes", "steps"):
        env = E.make("minigrid/MT3", envs_per_task=4, seed=0, task_share=mode)
        env.reset(seed=0)
        env.set_task_weights(w)
        counts = np.zeros(3)
        for t in range(2000):
            _, _, _, _, info = env.step(env.action_space.sample())
            if t >= 200:  # after the first episodes ended and slots were redrawn
                counts += np.bincount(info["task_id"], minlength=3)
        share[mode] = counts / counts.sum()
    np.testing.assert_allclose(share["steps"], w, atol=0.03)
    assert share["episodes"][2] < w[2] - 0.05, share  # the bias 'steps' removes
    with pytest.raises(MtrlError, match="task_share"):
        E.make("minigrid/MT3", task_share="time")
    with pytest.raises(MtrlError, match="task_share must be"):
        __import__("mtrl.config", fromlist=["build_config"]).build_config(
            ["envs/minigrid-mt3.yaml", "agents/mtppo.yaml"], ["task_share=slots"])


def test_custom_and_mixed_sets():
    env = E.make("custom", tasks=["MiniGrid-Empty-5x5-v0", "MiniGrid-DoorKey-5x5-v0"], seed=1)
    _check_steps(env)
    with pytest.raises(MtrlError, match="different action spaces"):
        E.make("custom", tasks=["reach-v3", "MiniGrid-Empty-5x5-v0"])


def test_custom_yaml_set(tmp_path):
    p = tmp_path / "set.yaml"
    p.write_text("tasks: [reach-v3, push-v3]\n")
    ts = E.get(str(p))
    assert [t.name for t in ts.train] == ["reach-v3", "push-v3"]


@pytest.mark.parametrize("name,match", [("metaworld/MT11", "unknown task set 'metaworld/MT11'"),
                                        ("metaworld/MT1:reach-v9", "unknown Meta-World task 'reach-v9'")])
def test_unknown_names(name, match):
    with pytest.raises(MtrlError, match=match):
        E.get(name)
    with pytest.raises(MtrlError, match="unknown Meta-World task 'reech-v3'"):
        E.get("custom", ["reech-v3"])


def test_registry_lists_required_sets():
    for n in ["metaworld/MT10", "metaworld/MT25", "metaworld/MT50", "metaworld/ML10", "metaworld/ML45",
              "minigrid/MT5", "metaworld/MT1:<task>"]:
        assert n in names()


def test_metaworld_first_goal_is_reproducible():
    """metaworld draws the first goal before seeding; mtrl seeds first (same seed, same goals)."""
    a, _ = E.make("metaworld/MT1:reach-v3", envs_per_task=3, seed=5).reset()
    b, _ = E.make("metaworld/MT1:reach-v3", envs_per_task=3, seed=5).reset()
    np.testing.assert_array_equal(a, b)
    assert len({tuple(np.round(r[36:39], 5)) for r in a}) > 1  # slots get different goals
