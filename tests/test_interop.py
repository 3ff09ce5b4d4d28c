"""Adapters: Stable-Baselines3 and RLlib train on an mtrl task set and see its per-task info."""

import numpy as np
import pytest

from mtrl.errors import MtrlError
from mtrl.interop import TaskSetEnv, sb3_vec_env


def test_sb3_ppo_trains_on_a_task_set_and_sees_per_task_episodes():
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    class PerTask(BaseCallback):
        def __init__(self):
            super().__init__()
            self.ends: list[tuple[int, bool]] = []

        def _on_step(self) -> bool:
            for info, done in zip(self.locals["infos"], self.locals["dones"]):
                assert "task_id" in info and "success" in info
                if done:
                    assert info["terminal_observation"].shape == self.training_env.observation_space.shape
                    self.ends.append((info["episode"]["task_id"], info["is_success"]))
            return True

    venv = sb3_vec_env("minigrid/MT3", envs_per_task=2, max_episode_steps=40)
    assert venv.num_envs == 6 and venv.task_names == ["Empty-5x5", "Empty-Random-6x6", "LavaGapS5"]
    cb = PerTask()
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=128, n_epochs=1, verbose=0, seed=0)
    model.learn(1152, callback=cb)
    assert model.num_timesteps >= 1152 and len(model.ep_info_buffer) > 0
    assert {t for t, _ in cb.ends} == {0, 1, 2}  # every task's episodes reach the callback
    obs = venv.reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (6,)
    venv.close()


def test_task_set_env_passes_sb3_checks_and_draws_tasks_per_episode():
    from stable_baselines3.common.env_checker import check_env

    check_env(TaskSetEnv("minigrid/MT3", seed=0, max_episode_steps=5))
    env = TaskSetEnv("minigrid/MT3", seed=0, first_task=2, max_episode_steps=5)
    obs, info = env.reset(seed=0)
    assert info["task_id"] == 2 and obs[-3:].tolist() == [0, 0, 1]  # the one-hot of the first task
    seen = set()
    for _ in range(60):
        _, _, term, trunc, info = env.step(env.action_space.sample())
        seen.add(info["task_id"])
        if term or trunc:
            env.reset()
    assert seen == {0, 1, 2}
    env.close()
    env = TaskSetEnv("minigrid/MT3", seed=0, first_task=1)  # a reset mid-episode does not replay the stream
    a, _ = env.reset()
    env.step(2)
    b, _ = env.reset()
    c, _ = env.reset()
    assert not (np.array_equal(a, b) and np.array_equal(b, c))
    env.close()


def test_unknown_task_set_is_the_same_one_line_error():
    with pytest.raises(MtrlError, match="unknown task set 'minigrid/MT4'; did you mean 'minigrid/MT5'. valid task sets"):
        sb3_vec_env("minigrid/MT4")
    with pytest.raises(MtrlError, match="unknown task set 'minigrid/MT4'"):
        TaskSetEnv("minigrid/MT4")


@pytest.mark.ray
def test_rllib_ppo_trains_on_a_registered_task_set(ray_cluster):
    from ray.rllib.algorithms.ppo import PPOConfig

    from mtrl.interop import register_rllib_envs

    assert "mtrl/minigrid/MT3" in register_rllib_envs()
    cfg = (PPOConfig().environment("mtrl/minigrid/MT3", env_config={"max_episode_steps": 64})
           .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
           .training(train_batch_size_per_learner=256, minibatch_size=64, num_epochs=1)
           .rl_module(model_config={"fcnet_hiddens": [32, 32]}))
    algo = cfg.build_algo()
    try:
        for _ in range(2):
            result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 512
        assert np.isfinite(result["env_runners"]["episode_return_mean"])
    finally:
        algo.stop()
