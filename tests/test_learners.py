"""Data-parallel learners (``learners: N``): N learners on shares of a batch take the step one learner
takes on the whole batch, with and without gradient surgery; and the CLI path end to end."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from mtrl.agents import MTSAC, SACConfig
from mtrl.config import build_config
from mtrl.errors import MtrlError

T, OBS = 3, 8 + 3
BOX = gym.spaces.Box(-1, 1, (4,), np.float32)


def _batch(per_task, seed):
    r = np.random.default_rng(seed)
    n = T * per_task
    return {"obs": r.normal(size=(n, OBS)).astype(np.float32), "actions": r.uniform(-1, 1, (n, 4)).astype(np.float32),
            "rewards": r.normal(size=n).astype(np.float32), "next_obs": r.normal(size=(n, OBS)).astype(np.float32),
            "terminated": (r.random(n) < 0.1).astype(np.float32), "task_ids": np.repeat(np.arange(T), per_task)}


def _join(parts):
    """Task-major shares ``[T * m]`` back into the task-major whole ``[T * N m]``."""
    rest = parts[0].shape[1:]
    return np.concatenate([p.reshape(T, -1, *rest) for p in parts], 1).reshape(-1, *rest)


@pytest.mark.parametrize("surgery,arch,extra", [
    ("mean", "mlp", {}),
    ("pcgrad", "mlp", {"diagnostics": 1}),
    ("pcgrad", "lora", {"actor_update_freq": 2}),  # per-task adapters, and updates without an actor step
])
def test_two_learners_on_shares_equal_one_learner_on_the_whole_batch(ray_cluster, surgery, arch, extra):
    import copy

    import ray

    from mtrl.learners import LearnerGroup

    diag = extra.pop("diagnostics", 0)
    cfg = SACConfig(hidden=[32, 32], batch_per_task=8, lr=1e-3, arch=arch, **extra)
    group = LearnerGroup(MTSAC, cfg, OBS, T, BOX, 2, seed=0, learner_cpus=1, surgery=surgery, diagnostics_every=diag,
                         timeout_s=60)
    one = MTSAC(cfg, OBS, T, BOX, seed=0, surgery=surgery, diagnostics_every=diag)
    try:
        for k in range(5):
            batch = _batch(8, k)
            saved = copy.deepcopy(group.gen.bit_generator.state)
            shares = group.shares(batch)  # the noise group.update draws next; the reference gets the same
            group.gen.bit_generator.state = saved
            whole = {key: _join([s[key] for s in shares]) for key in shares[0]}
            np.testing.assert_array_equal(whole["obs"], batch["obs"])
            out = group.update(batch)
            ref = one.update(whole)
            np.testing.assert_allclose(out["loss/critic"], ref["loss/critic"], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(out["sac/q"], ref["sac/q"], rtol=1e-4, atol=1e-5)
        state = ray.get([a.state_dict.remote() for a in group.learners])
        for name in ("actor", "critic"):
            for key, v in one.state_dict()[name].items():
                assert torch.allclose(state[0][name][key], v, atol=1e-5), (name, key)
                assert torch.equal(state[0][name][key], state[1][name][key])  # the replicas stay identical
        assert torch.allclose(state[0]["log_alpha"], one.log_alpha.detach(), atol=1e-6)
        assert torch.equal(group.policy.state_dict()["head.weight"], state[0]["actor"]["head.weight"])  # fresh
    finally:
        group.close()


def test_a_nan_in_one_share_makes_every_learner_skip_instead_of_hanging(ray_cluster):
    import ray

    from mtrl.learners import LearnerGroup

    cfg = SACConfig(hidden=[16], batch_per_task=4, critic_loss="categorical")
    group = LearnerGroup(MTSAC, cfg, OBS, T, BOX, 2, seed=0, learner_cpus=1, timeout_s=30)
    try:
        batch = _batch(4, 0)
        batch["rewards"][0] = np.nan  # task 0's first row: learner 0's share only
        group.update(batch)
        assert [s["nan_skips"] for s in ray.get([a.state_dict.remote() for a in group.learners])] == [1, 1]
        group.update(_batch(4, 1))  # and they go on together
        assert [s["updates"] for s in ray.get([a.state_dict.remote() for a in group.learners])] == [2, 2]
    finally:
        group.close()


def test_learners_train_end_to_end_and_resume(ray_cluster, tmp_path):
    from mtrl import checkpoint
    from mtrl.train import train

    args = ["taskset=metaworld/MT1:reach-v3", "envs_per_task=2", "algo=mtsac", "sac.hidden=[32,32]",
            "sac.batch_per_task=32", "sac.learning_starts=200", "sac.collect_steps=50", "learners=2",
            "checkpoint_every=400", "eval_every=0", f"run_dir={tmp_path / 'r'}"]
    run = train(build_config([], [*args, "total_steps=800"]))
    state = checkpoint.load(checkpoint.latest(run))
    assert state["agent"]["updates"] > 0 and "group_gen" in state["agent"]
    train(build_config([], [*args, "total_steps=1200"]), resume=run)
    assert checkpoint.load(checkpoint.latest(run))["step"] == 1200


def test_learners_config_errors():
    with pytest.raises(MtrlError, match="learners=3 must divide sac.batch_per_task=128"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["learners=3"])
    with pytest.raises(MtrlError, match="learners=2 .* works with algo=mtsac"):
        build_config(["envs/minigrid-mt3.yaml", "agents/mtppo.yaml"], ["learners=2"])
    with pytest.raises(MtrlError, match="learners must be >= 1"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["learners=0"])
