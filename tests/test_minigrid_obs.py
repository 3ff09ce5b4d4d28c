"""The fast MiniGrid observation equals MiniGrid's own on random rollouts of many MiniGrid envs."""

import gymnasium as gym
import minigrid  # noqa: F401
import numpy as np
import pytest
from minigrid.minigrid_env import MiniGridEnv

from mtrl.envs.minigrid_obs import fast_gen_obs, install
from mtrl.envs.tasksets import LADDER

IDS = sorted({*LADDER, *LADDER.values(), "MiniGrid-Empty-5x5-v0", "MiniGrid-LavaGapS5-v0", "MiniGrid-DoorKey-5x5-v0",
              "MiniGrid-FourRooms-v0", "MiniGrid-LavaCrossingS9N1-v0", "MiniGrid-ObstructedMaze-1Dlhb-v0",
              "MiniGrid-Fetch-5x5-N2-v0", "MiniGrid-PutNear-6x6-N2-v0", "MiniGrid-RedBlueDoors-6x6-v0",
              "MiniGrid-Dynamic-Obstacles-5x5-v0", "MiniGrid-DistShift1-v0", "MiniGrid-GoToDoor-5x5-v0"})


@pytest.mark.parametrize("env_id", IDS)
def test_fast_observation_equals_minigrids_on_random_rollouts(env_id):
    env = gym.make(env_id)
    base = env.unwrapped
    rng = np.random.default_rng(0)
    env.reset(seed=1)
    carried = opened = 0
    for _ in range(400):
        ref = MiniGridEnv.gen_obs(base)
        fast = fast_gen_obs(base)
        np.testing.assert_array_equal(fast["image"], ref["image"])
        assert fast["direction"] == ref["direction"] and fast["mission"] == ref["mission"]
        carried += base.carrying is not None
        opened += any(getattr(c, "is_open", False) for c in base.grid.grid if c is not None)
        # forward / turns mostly, with pickups and toggles so that carried objects and doors show up
        a = rng.choice(7, p=[0.2, 0.2, 0.3, 0.12, 0.03, 0.15, 0.0])
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset(seed=int(rng.integers(1 << 30)))
    if env_id == "MiniGrid-DoorKey-5x5-v0":
        assert carried and opened  # the rollout saw a carried key and an open door


def test_installed_on_mtrl_minigrid_tasks_only_where_gen_obs_is_minigrids():
    import pickle

    from mtrl.envs.minigrid_obs import FastGenObs
    from mtrl.envs.tasks import TaskSpec, build_task_env

    env = build_task_env(TaskSpec("DoorKey-5x5", "minigrid", "MiniGrid-DoorKey-5x5-v0"), seed=0)
    assert isinstance(env.unwrapped.gen_obs, FastGenObs)
    env.reset(seed=0)
    twin = pickle.loads(pickle.dumps(env))  # runners' env state is pickled into checkpoints
    for a in [2, 1, 2, 3, 5]:
        np.testing.assert_array_equal(env.step(a)[0], twin.step(a)[0])
    assert twin.unwrapped.gen_obs.env is twin.unwrapped

    class Custom(type(gym.make("MiniGrid-Empty-5x5-v0").unwrapped)):
        def gen_obs(self):
            return super().gen_obs()

    assert not install(Custom())
