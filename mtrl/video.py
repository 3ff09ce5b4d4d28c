"""`mtrl record`: rollout videos of a run's policy, one mp4 per task and one grid of all tasks.

Each task is rendered in its own spawned process: two Meta-World envs rendering in one
process garble each other's frames (metaworld issue 448), and the OpenGL backend must be
chosen (``MUJOCO_GL``) before MuJoCo is imported. Off-screen backends are probed in order
EGL, OSMesa; when neither works the error says what to install. Frames are captioned with
the task name, step and success-so-far, and written with imageio/ffmpeg (frame sides padded
to multiples of 16, as H.264 encoders want).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mtrl.errors import MtrlError

_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size="1"/></worldbody></mujoco>')
r = mujoco.Renderer(m, 16, 16)
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
r.update_scene(d)
assert r.render().shape == (16, 16, 3)
"""


def gl_backend() -> str:
    """An off-screen MuJoCo backend that works here: ``$MUJOCO_GL`` if set, else egl, else osmesa."""
    candidates = [os.environ["MUJOCO_GL"]] if os.environ.get("MUJOCO_GL") else ["egl", "osmesa"]
    for backend in candidates:
        env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
        probe = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=120)
        if probe.returncode == 0:
            return backend
    raise MtrlError("no off-screen OpenGL backend for Meta-World rendering (tried "
                    f"{', '.join(candidates)}): install OSMesa (`apt-get install libosmesa6`) or EGL "
                    "drivers (`apt-get install libegl1 libgl1-mesa-dri`), or set MUJOCO_GL to one that works")


def caption(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """Frame with a caption bar on top and sides padded to multiples of 16."""
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    bar = 14 * len(lines) + 4
    H, W = -(-(h + bar) // 16) * 16, -(-w // 16) * 16
    img = Image.new("RGB", (W, H), (20, 20, 20))
    img.paste(Image.fromarray(np.ascontiguousarray(frame)), (0, bar))
    draw = ImageDraw.Draw(img)
    for i, text in enumerate(lines):
        draw.text((3, 2 + 14 * i), text, fill=(255, 255, 255))
    return np.asarray(img)


def _record_task(job: dict[str, Any]) -> dict[str, Any]:
    """Run in a spawned process: roll out one task, write its mp4, return small frames for the grid."""
    if job["backend"]:
        os.environ["MUJOCO_GL"] = job["backend"]
        os.environ["PYOPENGL_PLATFORM"] = job["backend"]
    import imageio
    import torch

    from mtrl.agents.device import cpu_policy
    from mtrl.envs import make
    from mtrl.runs import env_kwargs, load_run

    torch.set_num_threads(1)
    run = load_run(job["run_dir"], job["checkpoint"], job["trusted"])
    cfg, policy = run.cfg, cpu_policy(run.agent)  # the evaluation policy (e.g. MT-SAC's averaged actor)
    kw = {**env_kwargs(cfg), "envs_per_task": 1, "seed": job["seed"], "split": job["split"]}
    env = make(**kw, slots=[job["task_index"]], render_mode="rgb_array",
               render_kwargs={"width": job["size"], "height": job["size"], "camera_name": job["camera"]})
    name = env.task_names[job["task_index"]]
    frames, small, successes = [], [], []
    obs, _ = env.reset(seed=job["seed"])
    for ep in range(job["episodes"]):
        step, succ, done = 0, False, False
        while not done:
            raw = env.current_env(0).render()
            if job["camera"] and env.tasks[job["task_index"]].kind == "metaworld":
                raw = raw[::-1]  # named Meta-World cameras render upside down
            f = caption(raw, [name, f"episode {ep + 1}  step {step}  success {int(succ)}"])
            frames.append(f)
            small.append(f)
            a = policy.act(torch.from_numpy(obs), torch.from_numpy(env.task_ids.copy()), deterministic=True)[0]
            obs, _, term, trunc, info = env.step(a.numpy())
            succ = succ or bool(info["success"][0])
            step += 1
            done = bool(term[0] or trunc[0]) or step >= job["max_steps"]
        # the env has auto-reset: repeat the last frame, captioned with the episode's outcome
        end = caption(raw, [name, f"episode {ep + 1}  step {step}  success {int(succ)}  (end)"])
        frames += [end] * max(1, job["fps"] // 2)
        small += [end] * max(1, job["fps"] // 2)
        successes.append(succ)
    env.close()
    path = Path(job["out_dir"]) / f"{name}.mp4"
    with imageio.get_writer(path, fps=job["fps"], codec="libx264", macro_block_size=16) as w:
        for f in frames:
            w.append_data(f)
    return {"task": name, "path": str(path), "frames": len(frames), "success": successes, "small": small}


def grid(videos: list[list[np.ndarray]], cols: int) -> list[np.ndarray]:
    """Tile per-task frame lists side by side; shorter videos hold their last frame."""
    h = max(v[0].shape[0] for v in videos)
    w = max(v[0].shape[1] for v in videos)
    rows = -(-len(videos) // cols)
    n = max(len(v) for v in videos)
    out = []
    for t in range(n):
        canvas = np.zeros((rows * h, cols * w, 3), np.uint8)
        for k, v in enumerate(videos):
            f = v[min(t, len(v) - 1)]
            r, c = divmod(k, cols)
            canvas[r * h:r * h + f.shape[0], c * w:c * w + f.shape[1]] = f
        out.append(canvas)
    return out


def record(run_dir: str | Path, tasks: list[str] | None = None, episodes: int = 1, checkpoint: str | None = None,
           camera: str | None = None, size: int = 256, max_steps: int = 500, fps: int = 30,
           seed: int | None = None, trusted: bool = False) -> dict[str, Any]:
    """Record ``episodes`` deterministic episodes per task into ``RUN_DIR/videos``."""
    import imageio

    from mtrl import checkpoint as ckpt_mod
    from mtrl.envs import make
    from mtrl.errors import choices, did_you_mean
    from mtrl.runs import env_kwargs, load_config

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    ckpt = Path(checkpoint) if checkpoint else ckpt_mod.latest_intact(run_dir, trusted)[0]
    # Choose the GL backend before anything imports metaworld (and with it MuJoCo).
    needs_gl = cfg.taskset.startswith("metaworld/") or any(str(t).endswith(("-v2", "-v3")) for t in cfg.tasks)
    backend = gl_backend() if needs_gl else None
    if backend:
        os.environ["MUJOCO_GL"] = backend
        os.environ["PYOPENGL_PLATFORM"] = backend
    probe = make(**env_kwargs(cfg))
    names = probe.task_names
    if tasks:
        bad = [t for t in tasks if t not in names]
        if bad:
            raise MtrlError(f"task {bad[0]!r} is not in the run's task set; {did_you_mean(bad[0], names)}valid tasks: {choices(names)}")
    chosen = [i for i, n in enumerate(names) if not tasks or n in tasks]
    out_dir = run_dir / "videos"
    out_dir.mkdir(exist_ok=True)
    jobs = [dict(run_dir=str(run_dir), checkpoint=str(ckpt), task_index=i, split=cfg.split, episodes=episodes,
                 size=size, camera=camera, max_steps=max_steps, fps=fps, out_dir=str(out_dir), backend=backend, trusted=trusted,
                 seed=cfg.seed + 30_000 if seed is None else seed) for i in chosen]
    from tqdm import tqdm

    ctx = mp.get_context("spawn")
    results = []
    with ctx.Pool(1, maxtasksperchild=1) as pool:  # one fresh process per task (see module docstring)
        for res in tqdm(pool.imap(_record_task, jobs), total=len(jobs), desc="recording", unit="task",
                        disable=not sys.stderr.isatty()):
            results.append(res)
    cols = int(np.ceil(np.sqrt(len(results))))
    grid_path = out_dir / "grid.mp4"
    frames = grid([r.pop("small") for r in results], cols)
    with imageio.get_writer(grid_path, fps=fps, codec="libx264", macro_block_size=16) as w:
        for f in frames:
            w.append_data(f)
    imageio.imwrite(out_dir / "grid_frame.png", frames[len(frames) // 2])
    return {"videos": results, "grid": str(grid_path), "backend": backend, "grid_frames": frames}


def gif_bytes(frames: list[np.ndarray], fps: int) -> bytes:
    """Encode frames as an animated GIF (what TensorBoard's video panel shows)."""
    import io

    from PIL import Image

    imgs = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()
