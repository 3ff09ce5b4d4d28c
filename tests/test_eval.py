"""`mtrl eval`: per-task success with intervals, eval.json, held-out ML tasks, clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtrl.config import build_config
from mtrl.evaluate import wilson_interval
from mtrl.train import train

ROOT = Path(__file__).resolve().parent.parent


def mtrl(*args):
    return subprocess.run([sys.executable, "-m", "mtrl.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    train(build_config([], ["taskset=minigrid/MT3", "total_steps=300", "ppo.num_steps=50", f"run_dir={run}"]))
    return run


def test_eval_writes_every_task(tiny_run):
    r = mtrl("eval", tiny_run, "--episodes", "3")
    assert r.returncode == 0, r.stderr
    assert "success at any step" in r.stdout and "95% CI" in r.stdout
    data = json.loads((tiny_run / "eval.json").read_text())
    assert set(data["tasks"]) == {"Empty-5x5", "Empty-Random-6x6", "LavaGapS5"}
    for v in data["tasks"].values():
        assert v["episodes"] == 3 and 0 <= v["success_ci95"][0] <= v["success"] <= v["success_ci95"][1] <= 1
    assert 0 <= data["mean_success_train"] <= 1 and data["step"] == 300


def test_eval_subset_and_bad_task(tiny_run):
    r = mtrl("eval", tiny_run, "--episodes", "1", "--tasks", "LavaGapS5")
    assert r.returncode == 0, r.stderr
    assert list(json.loads((tiny_run / "eval.json").read_text())["tasks"]) == ["LavaGapS5"]
    r = mtrl("eval", tiny_run, "--tasks", "DoorKey-5x5")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "task 'DoorKey-5x5' is not in the run's task set; valid tasks: 'Empty-5x5'" in r.stderr


def test_eval_without_checkpoints_is_a_clear_error(tmp_path):
    (tmp_path / "config.yaml").write_text("taskset: minigrid/MT3\n")
    r = mtrl("eval", tmp_path)
    assert r.returncode == 2 and "no checkpoints in" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_eval_ml10_without_one_hot_covers_held_out_tasks(tmp_path):
    run = tmp_path / "ml10"
    train(build_config([], ["taskset=metaworld/ML10", "one_hot=false", "total_steps=80", "ppo.num_steps=8",
                            "max_episode_steps=20", f"run_dir={run}"]))
    r = mtrl("eval", run, "--episodes", "1")
    assert r.returncode == 0, r.stderr
    data = json.loads((run / "eval.json").read_text())
    splits = {v["split"] for v in data["tasks"].values()}
    assert splits == {"train", "test"} and len(data["tasks"]) == 15
    assert "lever-pull-v3" in data["tasks"] and "mean_success_test" in data


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and abs(hi - 0.2775) < 1e-3
    lo, hi = wilson_interval(5, 10)
    assert abs(lo - 0.2366) < 1e-3 and abs(hi - 0.7634) < 1e-3


def test_stochastic_eval_is_repeatable_and_separate(tiny_run):
    from mtrl.evaluate import evaluate_run

    a = evaluate_run(tiny_run, episodes=3, progress=False, deterministic=False, seed=5)
    b = evaluate_run(tiny_run, episodes=3, progress=False, deterministic=False, seed=5)
    assert a["tasks"] == b["tasks"] and a["deterministic"] is False
    r = mtrl("eval", tiny_run, "--episodes", "2", "--stochastic")
    assert r.returncode == 0, r.stderr
    assert "stochastic episodes per task" in r.stdout and (tiny_run / "eval_stochastic.json").is_file()


def test_evaluation_runs_on_one_thread_and_restores_the_count(tiny_run):
    """Small-batch policy calls on several OpenMP threads crawl on a busy machine (~400x measured):
    evaluate() (used by mtrl eval, sweeps and in-training evaluation) calls the policy on one
    thread and gives the caller's count back."""
    import torch

    from mtrl.envs import make
    from mtrl.evaluate import evaluate
    from mtrl.runs import env_kwargs, load_run

    run = load_run(tiny_run)
    seen = []

    class Spy:
        def act(self, *a, **k):
            seen.append(torch.get_num_threads())
            return run.agent.policy.act(*a, **k)

    env = make(**{**env_kwargs(run.cfg), "envs_per_task": 1, "seed": 0})
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        evaluate(Spy(), env, 1)
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(prev)
        env.close()
