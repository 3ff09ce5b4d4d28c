"""`mtrl record`: playable mp4s (decoded back) for MiniGrid and Meta-World, grid video, clear errors."""

import os
import subprocess
import sys
from pathlib import Path

import imageio
import pytest

from mtrl.config import build_config
from mtrl.train import train

ROOT = Path(__file__).resolve().parent.parent


def mtrl(*args, env=None):
    return subprocess.run([sys.executable, "-m", "mtrl.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env=env)


def _decode(path: Path) -> tuple[int, tuple[int, ...]]:
    reader = imageio.get_reader(path)
    n, shape = reader.count_frames(), reader.get_data(0).shape
    reader.close()
    return n, shape


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("rec")
    mg = base / "mg"
    train(build_config([], ["taskset=minigrid/MT3", "total_steps=200", "ppo.num_steps=50", f"run_dir={mg}"]))
    mw = base / "mw"
    train(build_config([], ["taskset=metaworld/MT1:reach-v3", "algo=mtsac", "sac.hidden=[16]", "total_steps=100",
                            "sac.learning_starts=50", "sac.collect_steps=10", f"run_dir={mw}"]))
    return mg, mw


def test_record_minigrid_writes_playable_mp4s_and_grid(runs):
    mg, _ = runs
    r = mtrl("record", mg, "--max-steps", "12")
    assert r.returncode == 0, r.stderr
    for name in ["Empty-5x5", "Empty-Random-6x6", "LavaGapS5"]:
        n, shape = _decode(mg / "videos" / f"{name}.mp4")
        assert 1 + 15 <= n <= 12 + 15 and shape[0] % 16 == 0  # + half a second (30 fps) of the final frame and shape[1] % 16 == 0 and shape[2] == 3
    n, shape = _decode(mg / "videos" / "grid.mp4")
    assert n >= 1 and shape[1] >= 2 * 160  # 2 x 2 tiles of at least 160 px
    assert (mg / "videos" / "grid_frame.png").is_file()


def test_record_metaworld_with_camera(runs):
    _, mw = runs
    r = mtrl("record", mw, "--max-steps", "8", "--size", "96", "--camera", "corner")
    assert r.returncode == 0, r.stderr
    n, shape = _decode(mw / "videos" / "reach-v3.mp4")
    assert n == 8 + 15 and shape[1] == 96 and shape[0] == 96 + 32  # 96 px frame + caption bar, padded to 16


def test_record_errors(runs, tmp_path):
    mg, mw = runs
    r = mtrl("record", mg, "--tasks", "Nope")
    assert r.returncode == 2 and "task 'Nope' is not in the run's task set" in r.stderr
    r = mtrl("record", tmp_path)
    assert r.returncode == 2 and "not a run folder" in r.stderr
    r = mtrl("record", mw, env={**os.environ, "MUJOCO_GL": "no-such-backend"})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "no off-screen OpenGL backend" in r.stderr and "apt-get install libosmesa6" in r.stderr


def test_training_logs_videos_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "vid"
    train(build_config([], ["taskset=minigrid/MT3", "total_steps=200", "ppo.num_steps=50", "video_every=200",
                            "video_max_steps=6", f"run_dir={run}"]))
    ea = EventAccumulator(str(run), size_guidance={"images": 0})
    ea.Reload()
    assert "video/grid" in ea.Tags()["images"]
    gif = ea.Images("video/grid")[-1].encoded_image_string
    assert gif[:6] in (b"GIF87a", b"GIF89a")
    assert (run / "videos" / "grid.mp4").is_file()
