"""The `mtrl` CLI end to end on tiny budgets, and its one-line errors on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtrl.compare import eval_returns

ROOT = Path(__file__).resolve().parent.parent


def mtrl(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "mtrl.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_tasksets_lists_sets_and_tasks():
    r = mtrl("tasksets")
    assert r.returncode == 0, r.stderr
    for s in ["metaworld/MT10", "metaworld/MT50", "metaworld/ML10", "minigrid/MT5", "DoorKey-5x5", "drawer-open-v3"]:
        assert s in r.stdout


def test_archs_lists_the_architectures_and_their_options():
    r = mtrl("archs")
    assert r.returncode == 0, r.stderr
    for s in ["moore", "experts=4", "softmod", "modules=4", "care (needs task descriptions", "lora", "rank=4"]:
        assert s in r.stdout


def test_train_end_to_end_writes_config_checkpoint_and_tensorboard(tmp_path):
    run = tmp_path / "run"
    r = mtrl("train", "envs/minigrid-mt3.yaml", "agents/mtppo.yaml", "total_steps=1000", "ppo.num_steps=64",
             f"run_dir={run}", "seed=7")
    assert r.returncode == 0, r.stderr
    assert "steps/s" in r.stdout and "ETA" in r.stdout and "success" in r.stdout
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["seed"] == 7 and cfg["taskset"] == "minigrid/MT3" and cfg["ppo"]["num_steps"] == 64
    assert list((run / "checkpoints").glob("step_*.pt"))
    ea = EventAccumulator(str(run))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for tag in ["loss/task/Empty-5x5", "loss/policy/mean", "perf/steps_per_s", "success/window/LavaGapS5"]:
        assert tag in tags, sorted(tags)
    assert any(t.startswith("task/") and t.endswith("/success") for t in tags)
    assert any(t.startswith("task/") and t.endswith("/episode_length") for t in tags)
    # resume continues from the checkpoint with the same counters
    r2 = mtrl("train", "--resume", run, "total_steps=1500")
    assert r2.returncode == 0, r2.stderr
    assert "resumed from step_000000001152.pt at step 1,152" in r2.stdout


def test_train_with_surgery_logs_diagnostics(tmp_path):
    run = tmp_path / "surgery"
    r = mtrl("train", "envs/reach4.yaml", "agents/mtsac-pcgrad.yaml", "total_steps=600", "sac.hidden=[32,32]",
             "sac.learning_starts=200", "sac.collect_steps=25", "eval_every=600", "eval_episodes=1",
             "diagnostics_every=5", f"run_dir={run}")
    assert r.returncode == 0, r.stderr
    assert "eval at step 600" in r.stdout
    ea = EventAccumulator(str(run))
    ea.Reload()
    assert {"diag/critic/cosine", "diag/actor/cosine"} <= set(ea.Tags()["images"])
    tags = set(ea.Tags()["scalars"])
    for tag in ["diag/critic/conflict_fraction", "diag/actor/condition_number", "diag/critic/grad_norm/reach-v3",
                "eval/success/mean", "sac/alpha/drawer-close-v3", "loss/critic/window-open-v3"]:
        assert tag in tags, sorted(tags)
    # eval_history.jsonl carries each task's evaluation return, the one TensorBoard logged; a run from
    # before that field gets it back from the events (compare.eval_returns)
    hist = [json.loads(line) for line in (run / "eval_history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist] == [600] and set(hist[0]["return"]) == set(hist[0]["success"])
    steps, returns = eval_returns(run)
    assert list(steps) == [600] and {t: float(v[0]) for t, v in returns.items()} == hist[0]["return"]
    tb = {t.removeprefix("eval/return/"): ea.Scalars(t)[0].value for t in tags if t.startswith("eval/return/")}
    (run / "eval_history.jsonl").write_text(json.dumps({k: v for k, v in hist[0].items() if k != "return"}) + "\n")
    steps, returns = eval_returns(run)
    assert list(steps) == [600] and {t: float(v[0]) for t, v in returns.items()} == {
        t: v for t, v in tb.items() if t != "mean"}
    for t, v in hist[0]["return"].items():
        assert abs(tb[t] - v) <= 0.005 + 1e-4 * abs(v)  # the history rounds to 2 decimals


def test_train_with_two_ray_runners(tmp_path):
    run = tmp_path / "ray"
    r = mtrl("train", "envs/minigrid-mt3.yaml", "agents/mtppo.yaml", "total_steps=600", "ppo.num_steps=50",
             "runners=2", f"run_dir={run}")
    assert r.returncode == 0, r.stderr
    assert "2 Ray runners" in r.stdout and list((run / "checkpoints").glob("step_*.pt"))
    # Ray's own log lines (start-up warnings, "Started a local Ray instance") go to the run folder
    assert "Started a local Ray instance" in (run / "ray.log").read_text()
    assert not [line for line in r.stderr.splitlines() if "ray" in line.lower()], r.stderr


@pytest.mark.parametrize("args,needle", [
    (["taskset=metaworld/MT11"], "unknown task set 'metaworld/MT11'; did you mean 'metaworld/MT10'? valid task sets:"),
    (["taskset=custom", "tasks=[reech-v3]"], "unknown Meta-World task 'reech-v3'; did you mean 'reach-v3'? valid"),
    (["taskset=custom", "tasks=[reach-v2]"], "unknown Meta-World task 'reach-v2'; did you mean 'reach-v3'? valid"),
    (["taskset=custom", "tasks=[]"], "the task list of task set 'custom' is empty"),
    (["bogus_key=3"], "unknown config key 'bogus_key'"),
    (["total_step=3"], "unknown config key 'total_step' in command-line overrides; did you mean 'total_steps'?"),
    (["ppo.bogus=3"], "unknown config key 'ppo.bogus'"),
    (["total_steps=-5"], "total_steps must be a positive number, got -5"),
    (["ppo.lr=abc"], "bad value for 'ppo.lr'"),
    (["algo=mtppx"], "unknown algo 'mtppx'; did you mean 'mtppo'? valid algorithms: 'mtppo'"),
    (["ppo.heads=many"], "unknown ppo.heads 'many'; valid choices: 'single', 'multi', 'ensemble'"),
    (["surgery=pcgard"], "unknown surgery method 'pcgard'; did you mean 'pcgrad'? valid methods: 'mean'"),
    (["curriculum=lp"], "unknown curriculum 'lp'; valid curricula: 'uniform', 'success', 'learning-progress'"),
    (["curriculum=mastering-rate"], "needs a task graph: add `task_graph:"),
    (["curriculum=mastering-rate", "task_graph={Empty-5x5: [Nope]}"], "task_graph names task 'Nope'"),
    (["curriculum=plr", "curriculum_args={beta: 0}"], "curriculum_args.beta must be in (0.0"),
    (["curriculum_args=[1, 2]"], "bad value in command-line overrides"),
    (["ppo.heads=ensemble", "diagnostics_every=5"], "heads=ensemble shares no parameters"),
    (["ppo.kl_coeff=-0.2"], "ppo.kl_coeff must be >= 0 (0: no KL penalty) and ppo.kl_target > 0"),
    (["curriculum=camrl"], "needs per-task parameters: set ppo.heads=ensemble or multi"),
    (["device=gpu"], "unknown device 'gpu'; did you mean 'cpu'? valid choices: 'auto', 'cpu', 'cuda' or cuda:N"),
    (["device=cuda"], "device=cuda is not built for algo=mtppo (its learner runs on the CPU"),
])
def test_bad_input_one_line_error(tmp_path, args, needle):
    r = mtrl("train", "envs/minigrid-mt3.yaml", "agents/mtppo.yaml", *args, f"run_dir={tmp_path / 'x'}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not (tmp_path / "x").exists(), "nothing is written for a bad config"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_learner_without_a_gpu_is_one_line_and_writes_nothing(tmp_path):
    r = mtrl("train", "envs/reach4.yaml", "agents/mtsac.yaml", "device=cuda", f"run_dir={tmp_path / 'x'}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "device=cuda but torch sees no GPU" in lines[0], r.stderr
    assert not (tmp_path / "x").exists()


def test_malformed_yaml_and_missing_preset(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("taskset: minigrid/MT3\nppo: [unclosed\n")
    r = mtrl("train", "envs/minigrid-mt3.yaml", bad)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "malformed YAML" in r.stderr and "bad.yaml" in r.stderr
    r = mtrl("train", "envs/nope.yaml", "agents/mtppo.yaml")
    assert r.returncode == 2 and "no envs preset 'envs/nope.yaml'; valid presets:" in r.stderr
    r = mtrl("train", "--resume", tmp_path)
    assert r.returncode == 2 and "not a run folder" in r.stderr


@pytest.mark.parametrize("command", [None, "tasksets", "archs", "train", "eval", "record", "demos", "compare"])
def test_help_of_every_command_prints_usage(command):
    r = mtrl(*([command] if command else []), "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: mtrl") and "Traceback" not in r.stderr


# Presets that need more than an env preset (demos=PATH, or a task graph) are built by
# tests/test_imitation.py and tests/test_curriculum.py.
NEEDS_MORE = {"airl.yaml", "bc.yaml", "gail.yaml", "gail-mtsac.yaml", "mhairl.yaml", "mhairl-bc.yaml", "mtppo-mastering-rate.yaml",
              "mtsac-mastering-rate.yaml"}


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "agents").glob("*.yaml") if p.name not in NEEDS_MORE))
def test_every_agent_preset_builds_a_valid_config(preset):
    """Each shipped agent preset resolves (its ``base:``) and passes config validation with an env
    preset it is meant for (MiniGrid for MT-PPO-based ones, reach4 for MT-SAC-based ones)."""
    from mtrl.config import build_config

    algo = build_config(["envs/minigrid-mt3.yaml", f"agents/{preset}"], []).algo
    env = "envs/reach4.yaml" if algo == "mtsac" else "envs/minigrid-mt3.yaml"
    cfg = build_config([env, f"agents/{preset}"], [])
    assert cfg.algo in ("mtppo", "mtsac", "bc") and cfg.taskset
