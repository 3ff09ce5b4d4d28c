"""Kill-free resume gives the same next updates as an uninterrupted run."""

import json

import pytest
import torch

from mtrl import checkpoint
from mtrl.config import build_config
from mtrl.train import train, trim_eval_history

ARGS = ["taskset=minigrid/MT3", "envs_per_task=2", "ppo.num_steps=32", "checkpoint_every=192", "log_every=100"]


def _final_params(run_dir):
    state = checkpoint.load(checkpoint.latest(run_dir))
    return state, state["agent"]["net"]


def test_resume_equals_uninterrupted(tmp_path):
    # 192 steps per update (32 x 6 slots): checkpoints after updates 1, 2, 3, ...
    full = train(build_config([], [*ARGS, "total_steps=768", f"run_dir={tmp_path / 'full'}"]))
    part = train(build_config([], [*ARGS, "total_steps=384", f"run_dir={tmp_path / 'part'}"]))
    cfg = build_config([], ["total_steps=768"], base=build_config([], [*ARGS, f"run_dir={part}"]))
    train(cfg, resume=part)
    sa, pa = _final_params(full)
    sb, pb = _final_params(part)
    assert sa["step"] == sb["step"] == 768
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    assert sa["agent"]["updates"] == sb["agent"]["updates"] == 4
    for k, v in sa["agent"]["opt"]["state"].items():
        assert torch.equal(v["exp_avg"], sb["agent"]["opt"]["state"][k]["exp_avg"])


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    run = train(build_config([], [*ARGS, "total_steps=960", "keep_checkpoints=2", f"run_dir={tmp_path / 'r'}"]))
    ckpts = checkpoint.list_checkpoints(run / "checkpoints")
    assert [c.name for c in ckpts] == ["step_000000000768.pt", "step_000000000960.pt"]
    assert not list((run / "checkpoints").glob("*.tmp"))
    # A half-written temp file from a killed process is ignored by resume.
    (run / "checkpoints" / ".step_000000001152.pt.tmp").write_bytes(b"\x00garbage")
    assert checkpoint.latest(run).name == "step_000000000960.pt"


def test_resume_from_an_older_checkpoint_drops_the_evaluations_it_trains_again(tmp_path):
    """A resume from a checkpoint before the last evaluation (a hard kill between checkpoints, or
    ``--checkpoint``) must not leave two evaluations of one step in ``eval_history.jsonl``."""
    args = [*ARGS, "eval_every=192", "eval_episodes=1", "total_steps=768", f"run_dir={tmp_path / 'r'}"]
    run = train(build_config([], args))
    hist = run / "eval_history.jsonl"
    first = [json.loads(x) for x in hist.read_text().splitlines()]
    assert [h["step"] for h in first] == [192, 384, 576, 768]
    older = [c for c in checkpoint.list_checkpoints(run / "checkpoints") if checkpoint.load(c)["step"] == 576]
    assert older, "keep_checkpoints kept the step-576 checkpoint"
    train(build_config([], [], base=build_config([], args)), resume=run, from_checkpoint=older[0])
    again = [json.loads(x) for x in hist.read_text().splitlines()]
    assert [h["step"] for h in again] == [192, 384, 576, 768]
    assert again[:3] == first[:3]  # the evaluations before the checkpoint are kept as they were
    assert [json.loads(x)["step"] for x in (run / "eval_history.dropped.jsonl").read_text().splitlines()] == [768]


def test_trim_eval_history_keeps_steps_up_to_the_checkpoint_and_moves_the_rest(tmp_path):
    lines = [json.dumps({"step": s}) for s in (10, 20, 30)] + ['{"step": 4']  # the last: a write cut short
    (tmp_path / "eval_history.jsonl").write_text("".join(x + "\n" for x in lines))
    with pytest.warns(UserWarning, match="unreadable line"):
        assert trim_eval_history(tmp_path, 20) == 2
    assert [json.loads(x)["step"] for x in (tmp_path / "eval_history.jsonl").read_text().splitlines()] == [10, 20]
    assert (tmp_path / "eval_history.dropped.jsonl").read_text().splitlines() == lines[2:]  # nothing is lost
    assert trim_eval_history(tmp_path, 20) == 0
    assert trim_eval_history(tmp_path / "missing", 5) == 0
