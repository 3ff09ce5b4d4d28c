"""Faults a user meets: SIGTERM mid-run, a truncated newest checkpoint, an unreachable cluster."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

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


PREEMPT_STEPS = 768 * 16  # minigrid-mt3: 6 slots x 128 steps per update, 16 updates
PREEMPT_ARGS = ["envs/minigrid-mt3.yaml", "agents/mtppo.yaml", f"total_steps={PREEMPT_STEPS}", "checkpoint_every=0",
                "seed=3"]


def _uninterrupted(run, runners: int) -> dict:
    """The same run never interrupted: in this process without runners (quicker), else as a user runs it
    (Ray's runners draw their actions from their own generators, so it is not the in-process run)."""
    if runners == 0:
        train(build_config(PREEMPT_ARGS[:2], [*PREEMPT_ARGS[2:], f"run_dir={run}"]))
    else:
        subprocess.run([sys.executable, "-m", "mtrl.cli", "train", *PREEMPT_ARGS, f"runners={runners}",
                        f"run_dir={run}"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    return checkpoint.load(checkpoint.latest(run))


@pytest.mark.parametrize("runners", [0, 2])
def test_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path, runners):
    """Pre-emption as SLURM or Kubernetes does it: SIGTERM mid-run, then ``--resume``; the final step
    counter, update count and weights equal those of the same run never interrupted (in-process and
    with two Ray runners; MiniGrid runs checkpoint the envs' state, so resume is exact)."""
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "mtrl.cli", "train", *PREEMPT_ARGS, f"runners={runners}",
                             f"run_dir={cut}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and "steps/s" not in proc.stdout.readline():
        pass
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    stopped = checkpoint.load(checkpoint.latest(cut))
    assert 0 < stopped["step"] < PREEMPT_STEPS, "the signal came after the run had finished: nothing was tested"
    subprocess.run([sys.executable, "-m", "mtrl.cli", "train", "--resume", str(cut)], cwd=ROOT, capture_output=True,
                   text=True, timeout=300, check=True)
    a, b = _uninterrupted(tmp_path / "full", runners), checkpoint.load(checkpoint.latest(cut))
    assert a["step"] == b["step"] == PREEMPT_STEPS and a["agent"]["updates"] == b["agent"]["updates"] == 16
    for k, v in a["agent"]["net"].items():
        assert torch.equal(v, b["agent"]["net"][k]), k


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


def _tiny_run(tmp_path, name="r", steps=384):
    args = ["taskset=minigrid/MT3", "envs_per_task=2", "ppo.num_steps=32", "checkpoint_every=192", "log_every=100"]
    return train(build_config([], [*args, f"total_steps={steps}", f"run_dir={tmp_path / name}"]))


def test_checkpoint_is_weights_only_with_manifest_and_separate_env_state(tmp_path):
    run = _tiny_run(tmp_path)
    path = checkpoint.latest(run)
    import json

    import torch

    torch.load(path, weights_only=True)  # no pickled objects in the model file
    manifest = json.loads(checkpoint.manifest_path(path).read_text())
    assert set(manifest["files"]) == {path.name, checkpoint.env_path(path).name}
    assert manifest["files"][path.name]["size"] == path.stat().st_size
    state = checkpoint.load(path)
    assert "runners" not in state and isinstance(state["task_steps"], __import__("numpy").ndarray)
    assert len(checkpoint.load_env(path)) == 1  # one in-process runner's env state
    from mtrl.evaluate import evaluate_run, format_table

    table = format_table(evaluate_run(run, episodes=1, progress=False))
    assert "nan" not in table and "(1 episode)" in table
    # a flipped byte (same size) is caught by the hash and the previous checkpoint is used
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="does not match its manifest"):
        assert checkpoint.latest_intact(run)[1]["step"] == 192


def test_resume_skips_a_checkpoint_whose_env_file_is_damaged_or_missing(tmp_path):
    run = _tiny_run(tmp_path)
    newest, older = checkpoint.list_checkpoints(run / "checkpoints")[-1], checkpoint.list_checkpoints(run / "checkpoints")[-2]
    env = checkpoint.env_path(newest)
    env.write_bytes(env.read_bytes()[:-5])  # truncated: the model file alone still reads
    assert checkpoint.latest_intact(run)[0] == newest  # eval needs no env state
    with pytest.warns(UserWarning, match="does not match its manifest"):
        assert checkpoint.latest_intact(run, with_env=True)[0] == older
    env.unlink()
    with pytest.warns(UserWarning, match="listed in .* is missing"):
        assert checkpoint.latest_intact(run, with_env=True)[0] == older
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):  # resumes from the older one, goes on
        train(build_config([], ["taskset=minigrid/MT3", "envs_per_task=2", "ppo.num_steps=32", "checkpoint_every=192",
                                "total_steps=576"]), resume=run)
    assert checkpoint.latest_intact(run, with_env=True)[1]["step"] == 576


def test_eval_refuses_a_checkpoint_whose_pickle_would_run_code(tmp_path):
    import torch

    run = _tiny_run(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    state = checkpoint.load(checkpoint.latest(run))
    state["step"] = 10_000
    torch.save({**state, "payload": Evil()}, run / "checkpoints" / f"step_{10_000:012d}.pt")
    out = subprocess.run([sys.executable, "-m", "mtrl.cli", "eval", str(run), "--episodes", "1"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode != 0 and "refusing to load" in out.stderr and "Traceback" not in out.stderr
    assert not marker.exists()


def test_resume_from_an_explicit_checkpoint(tmp_path):
    run = _tiny_run(tmp_path, steps=576)
    first = checkpoint.list_checkpoints(run / "checkpoints")[0]
    assert checkpoint.load(first)["step"] == 192
    args = ["taskset=minigrid/MT3", "envs_per_task=2", "ppo.num_steps=32", "checkpoint_every=192", "log_every=100"]
    full = _tiny_run(tmp_path, "full", steps=768)
    train(build_config([], ["total_steps=768"], base=build_config([], [*args, f"run_dir={run}"])), resume=run,
          from_checkpoint=first)
    a, b = (checkpoint.load(checkpoint.latest(r)) for r in (run, full))
    assert a["step"] == b["step"] == 768
    abandoned = list((run / "checkpoints").glob("abandoned_*/step_*.pt"))
    assert sorted(p.name for p in abandoned) == [f"step_{384:012d}.pt", f"step_{576:012d}.pt"]
    for k, v in a["agent"]["net"].items():
        assert (v == b["agent"]["net"][k]).all(), k


def test_safe_state_round_trip_keeps_types():
    from collections import OrderedDict, deque

    import numpy as np
    import torch

    state = {"a": np.arange(5, dtype=np.int64), "b": np.float32(2.5), "z": np.array(3.0), "c": deque([np.ones(2), 3], maxlen=4),
             "d": (1, "x", None), "e": OrderedDict(w=torch.ones(2)), "rng": checkpoint.rng_state(),
             "u": np.random.get_state()[1]}
    import io

    buf = io.BytesIO()
    torch.save(checkpoint.to_safe(state), buf)
    back = checkpoint.from_safe(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert back["z"].shape == () and back["a"].dtype == np.int64 and (back["a"] == state["a"]).all() and back["b"] == 2.5
    assert isinstance(back["c"], deque) and back["c"].maxlen == 4 and back["c"][1] == 3
    assert back["u"].dtype == np.uint32 and (back["u"] == state["u"]).all() and back["d"] == (1, "x", None)
    checkpoint.set_rng_state(back["rng"])
    with pytest.raises(TypeError, match="checkpoint field state/bad holds a set"):
        checkpoint.to_safe({"bad": {1, 2}})
    from collections import defaultdict, namedtuple

    Pair = namedtuple("Pair", "x y")
    buf = io.BytesIO()  # container subclasses come back as the plain containers weights_only allows
    torch.save(checkpoint.to_safe({"dd": defaultdict(list, k=[np.ones(2)]), "p": Pair(1, np.int64(2))}), buf)
    back = checkpoint.from_safe(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert type(back["dd"]) is dict and (back["dd"]["k"][0] == 1).all() and back["p"] == (1, 2)


def test_sweep_of_two_trials_and_a_killed_driver_restores_and_finishes(tmp_path):
    import json
    import os

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("name: tiny\nenvs: [envs/minigrid-mt3.yaml]\nagents: [agents/mtppo.yaml]\nseeds: [0, 1]\n"
                      "overrides: {total_steps: 61440, envs_per_task: 2, ppo.num_steps: 64, checkpoint_every: 1536}\n"
                      "final_eval_episodes: 1\nmax_concurrent: 1\n")
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "mtrl.cli", "sweep", str(recipe), "--out", str(out)]
    driver = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    first = out / "trials" / "minigrid-mt3_mtppo_s0" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not checkpoint.list_checkpoints(first):
        time.sleep(0.5)
    assert checkpoint.list_checkpoints(first), "the first trial never wrote a checkpoint"
    # the driver and everything it started (the trial runs ~4k steps/s: well before its 61,440 steps)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert not (out / "results.md").exists()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "restoring the sweep" in r.stdout
    rows = json.loads((out / "results.json").read_text())
    assert [row["step"] for row in rows] == [61440, 61440] and all(row["success"] is not None for row in rows)
    log = (out / "trials" / "minigrid-mt3_mtppo_s0" / "train.log").read_text()
    assert "resumed from step_" in log  # the interrupted trial continued from its own checkpoint
    from mtrl.compare import expand

    assert len(expand([out])) == 2  # `mtrl compare SWEEP` sees both trials


def test_bad_recipe_fails_before_any_trial(tmp_path):
    from mtrl.sweep import load_recipe, trials

    recipe = tmp_path / "r.yaml"
    recipe.write_text("envs: [envs/minigrid-mt3.yaml]\nagents: [agents/mtppo.yaml]\nseeds: [0]\nseed: [1]\n")
    with pytest.raises(MtrlError, match="unknown recipe key 'seed' in .*; did you mean 'seeds'"):
        load_recipe(recipe)
    recipe.write_text("envs: [envs/minigrid-mt3.yaml]\nagents: [agents/mtppo.yaml]\nseeds: [0]\n"
                      "overrides: {surgery: pcgard}\n")
    with pytest.raises(MtrlError, match="unknown surgery method 'pcgard'"):
        trials(load_recipe(recipe))
    recipe.write_text("envs: [envs/minigrid-mt3.yaml]\nagents: [agents/mtppo.yaml]\nseeds: [0]\n"
                      "overrides: {taskset: minigrid/MT4}\n")
    with pytest.raises(MtrlError, match="unknown task set 'minigrid/MT4'"):
        trials(load_recipe(recipe))
    recipe.write_text("envs: [envs/minigrid-mt3.yaml]\nagents: [agents/mtppx.yaml]\nseeds: [0]\n")
    with pytest.raises(MtrlError, match="no agents preset"):
        trials(load_recipe(recipe))


def test_restoring_a_sweep_whose_recipe_changed_is_refused_with_what_changed(tmp_path):
    import json

    from mtrl.sweep import check_same_trials, load_recipe, trials

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nenvs: [envs/minigrid-mt3.yaml]\nagents: [agents/mtppo.yaml]\nseeds: [0, 1]\n")
    sweep_dir = tmp_path / "sweep"
    (sweep_dir / "tune").mkdir(parents=True)
    (sweep_dir / "trials.json").write_text(json.dumps(trials(load_recipe(recipe))))
    check_same_trials(sweep_dir, trials(load_recipe(recipe)))  # the same recipe restores
    recipe.write_text("name: r\nenvs: [envs/minigrid-mt3.yaml]\nagents: [agents/mtppo.yaml]\nseeds: [1, 2]\n"
                      "overrides: {ppo.lr: 0.001}\n")
    with pytest.raises(MtrlError, match=r"recipe changed .*new trials: minigrid-mt3_mtppo_s2; trials no longer in it: "
                                        r"minigrid-mt3_mtppo_s0; changed trials: minigrid-mt3_mtppo_s1\).*--out"):
        check_same_trials(sweep_dir, trials(load_recipe(recipe)))
