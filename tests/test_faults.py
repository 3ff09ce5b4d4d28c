"""Faults a user meets: SIGTERM mid-run, a truncated newest checkpoint, an unreachable cluster."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtrl import checkpoint
from mtrl.config import build_config
from mtrl.errors import MtrlError
from mtrl.train import train

ROOT = Path(__file__).resolve().parent.parent


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path):
    run = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "mtrl.cli", "train", "envs/minigrid-mt3.yaml", "agents/mtppo.yaml",
                             "total_steps=5000000", "checkpoint_every=0", f"run_dir={run}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if "steps/s" in line:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "SIGTERM: writing a checkpoint" in out and f"continue with: mtrl train --resume {run}" in out
    ckpts = checkpoint.list_checkpoints(run / "checkpoints")
    assert len(ckpts) == 1 and 0 < checkpoint.load(ckpts[0])["step"] < 5_000_000


def test_truncated_newest_checkpoint_is_skipped_for_the_previous_one(tmp_path):
    args = ["taskset=minigrid/MT3", "envs_per_task=2", "ppo.num_steps=32", "checkpoint_every=192", "log_every=100"]
    run = train(build_config([], [*args, "total_steps=576", f"run_dir={tmp_path / 'r'}"]))
    ckpts = checkpoint.list_checkpoints(run / "checkpoints")
    newest = ckpts[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # a copy killed half-way
    with pytest.warns(UserWarning, match=f"skipping unreadable checkpoint {newest.name}"):
        path, state = checkpoint.latest_intact(run)
    assert path == ckpts[-2] and state["step"] == 384
    from mtrl.evaluate import evaluate_run

    with pytest.warns(UserWarning):
        assert evaluate_run(run, episodes=1, progress=False)["step"] == 384
    with pytest.warns(UserWarning):  # and --resume continues from it
        train(build_config([], ["total_steps=768"], base=build_config([], [*args, f"run_dir={run}"])), resume=run)
    assert checkpoint.load(checkpoint.list_checkpoints(run / "checkpoints")[-1])["step"] == 768


def test_unreachable_cluster_fails_fast_with_one_line():
    from mtrl.runners.pool import init_ray

    t0 = time.time()
    with pytest.raises(MtrlError, match="cannot reach a Ray cluster at 127.0.0.1:1"):
        init_ray("127.0.0.1:1")
    assert time.time() - t0 < 30
    with pytest.raises(MtrlError, match="must be 'auto' or host:port"):
        init_ray("nonsense")
