"""Per-task reward normalisation: the formulas, per-task separation, the transition layout, resume."""

import warnings

import numpy as np
import pytest
import torch

from mtrl import checkpoint
from mtrl.agents.reward_norm import RewardNormalizer
from mtrl.config import build_config
from mtrl.errors import MtrlError
from mtrl.train import train


def _rollout(rewards, tasks, dones):
    rewards = np.asarray(rewards, np.float32)
    return {"rewards": rewards, "task_ids": np.asarray(tasks), "terminated": np.asarray(dones, bool),
            "truncated": np.zeros_like(dones, bool)}


def test_max_return_maps_the_largest_discounted_return_to_v_max():
    norm = RewardNormalizer("max_return", num_tasks=2, num_slots=2, gamma=0.5, v_max=10.0)
    # slot 0 runs task 0 (reward 1 for 3 steps, then the episode ends), slot 1 task 1 (reward 10)
    S = 3
    norm.update(_rollout([[1, 10]] * S, [[0, 1]] * S, [[0, 0], [0, 0], [1, 1]]), "rollout")
    R = 1 + 0.5 + 0.25
    np.testing.assert_allclose(norm.scales(), [10 / R, 10 / (10 * R)])
    out = norm.relabel(_rollout([[1, 10]], [[0, 1]], [[0, 0]]), "rollout")
    np.testing.assert_allclose(out["rewards"], [[10 / R, 10 / R]], rtol=1e-6)  # both tasks on one scale
    # the episode ended: a new one starts from R = 0, so a smaller one leaves the maximum alone
    norm.update(_rollout([[0.1, 1]], [[0, 1]], [[1, 1]]), "rollout")
    np.testing.assert_allclose(norm.scales(), [10 / R, 10 / (10 * R)])


def test_running_std_divides_by_the_std_of_the_running_discounted_sum():
    rng = np.random.default_rng(0)
    norm = RewardNormalizer("running_std", num_tasks=2, num_slots=4, gamma=0.9)
    tasks = np.array([0, 0, 1, 1])
    Gs = {0: [], 1: []}
    G = np.zeros(4)
    for _ in range(200):
        r = rng.normal(size=4) * np.array([1, 1, 20, 20])
        done = rng.random(4) < 0.05
        G = 0.9 * G + r
        for j in range(4):
            Gs[tasks[j]].append(G[j])
        G[done] = 0
        norm.update(_rollout([r], [tasks], [done]), "rollout")
    expected = [1 / np.sqrt(np.var(Gs[t], ddof=1) + 1e-8) for t in (0, 1)]
    np.testing.assert_allclose(norm.scales(), expected, rtol=1e-6)  # rewards pass as float32
    assert norm.scales()[0] > 10 * norm.scales()[1]  # task 1's rewards are 20x larger


def test_flat_transitions_from_two_runners_give_the_rollout_statistics():
    rng = np.random.default_rng(1)
    S, N = 6, 4
    r = rng.normal(size=(S, N)).astype(np.float32)
    tasks = np.array([[0, 1, 0, 1]] * S)
    dones = rng.random((S, N)) < 0.3
    a = RewardNormalizer("max_return", 2, N, 0.9)
    a.update(_rollout(r, tasks, dones), "rollout")
    b = RewardNormalizer("max_return", 2, N, 0.9)
    blocks = [slice(0, 2), slice(2, 4)]  # runner-major, then step-major, as RunnerPool merges them
    flat = {k: np.concatenate([x[:, bl].reshape(-1) for bl in blocks]) for k, x in
            {"rewards": r, "task_ids": tasks, "dones": dones, "slots": np.tile(np.arange(N), (S, 1))}.items()}
    b.update(flat, "collected")
    np.testing.assert_allclose(a.scales(), b.scales())
    np.testing.assert_allclose(a.ret, b.ret)


def test_bad_reward_norm_values():
    with pytest.raises(MtrlError, match="unknown reward_norm 'std'; valid choices: 'none', 'running_std'"):
        build_config(["envs/minigrid-mt3.yaml", "agents/mtppo.yaml"], ["reward_norm=std"])
    with pytest.raises(MtrlError, match="reward_norm scales the environment's reward"):
        build_config(["envs/minigrid-mt3.yaml", "agents/gail.yaml"], ["reward_norm=max_return", "demos=x"])


SAC_ARGS = ["taskset=custom", "tasks=[MountainCarContinuous-v0]", "algo=mtsac", "sac.hidden=[32,32]",
            "sac.learning_starts=200", "sac.collect_steps=25", "sac.batch_per_task=32", "checkpoint_every=300",
            "log_every=100", "sac.save_buffer=true", "envs_per_task=2", "reward_norm=max_return"]


def test_sac_with_reward_norm_resumes_exactly(tmp_path):
    warnings.simplefilter("ignore")
    full = train(build_config([], [*SAC_ARGS, "total_steps=1000", f"run_dir={tmp_path / 'full'}"]))
    part = train(build_config([], [*SAC_ARGS, "total_steps=600", f"run_dir={tmp_path / 'part'}"]))
    train(build_config([], ["total_steps=1000"], base=build_config([], [*SAC_ARGS, f"run_dir={part}"])), resume=part)
    a, b = (checkpoint.load(checkpoint.latest(r)) for r in (full, part))
    for k, v in a["reward_model"].items():
        np.testing.assert_array_equal(v, b["reward_model"][k], err_msg=k)
    assert (a["reward_model"]["max_abs"] > 0).all()
    for k, v in a["agent"]["critic"].items():
        assert torch.equal(v, b["agent"]["critic"][k]), k


def test_ppo_run_with_running_std_keeps_per_task_statistics(tmp_path):
    run = train(build_config(["envs/minigrid-mt3.yaml", "agents/mtppo.yaml"],
                             ["envs_per_task=2", "ppo.num_steps=32", "total_steps=384", "reward_norm=running_std",
                              f"run_dir={tmp_path / 'r'}"]))
    state = checkpoint.load(checkpoint.latest(run))["reward_model"]
    assert state["count"].tolist() == [128, 128, 128]  # 2 slots x 32 steps x 2 iterations per task


def test_running_std_clips_scaled_rewards_on_a_sparse_task():
    norm = RewardNormalizer("running_std", num_tasks=1, num_slots=1, gamma=0.99)
    S = 200
    r = np.zeros((S, 1))
    r[-1] = 1.0  # the first success after a long run of zeros
    norm.update(_rollout(r, np.zeros((S, 1), int), np.zeros((S, 1), bool)), "rollout")
    out = norm.relabel(_rollout(r, np.zeros((S, 1), int), np.zeros((S, 1), bool)), "rollout")
    assert norm.scales()[0] > 10 and out["rewards"].max() == pytest.approx(10.0)
