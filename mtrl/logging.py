"""Per-task episode statistics, TensorBoard scalars and console progress lines."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class EpisodeStats:
    """Keeps the last ``window`` episodes of every task (return, success, length)."""

    def __init__(self, task_names: Sequence[str], window: int = 20):
        self.task_names = list(task_names)
        self.window = window
        self.hist = [deque(maxlen=window) for _ in task_names]
        self.total = np.zeros(len(task_names), np.int64)

    def add(self, episodes: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
        """Add finished episodes; returns ``{task: [[r, success, len], ...]}`` of this batch."""
        new: dict[int, list] = {}
        for r, s, length, t in zip(episodes["r"], episodes["success"], episodes["l"], episodes["task_id"]):
            row = (float(r), float(s), float(length))
            self.hist[int(t)].append(row)
            new.setdefault(int(t), []).append(row)
            self.total[int(t)] += 1
        return {t: np.asarray(v) for t, v in new.items()}

    def per_task(self, col: int) -> np.ndarray:
        """Windowed mean of column ``col`` (0 return, 1 success, 2 length) per task; NaN if none yet."""
        return np.array([np.mean([e[col] for e in h]) if h else np.nan for h in self.hist])

    def mean_success(self) -> float:
        """Mean over tasks of the windowed success (tasks without episodes count as 0)."""
        return float(np.nan_to_num(self.per_task(1), nan=0.0).mean())

    def state_dict(self) -> dict[str, Any]:
        return {"hist": [list(h) for h in self.hist], "total": self.total.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.hist = [deque(h, maxlen=self.window) for h in state["hist"]]
        self.total = np.asarray(state["total"])


class Logger:
    """TensorBoard writer plus one console line per log step (steps/s, ETA, mean success)."""

    def __init__(self, run_dir: Path, task_names: Sequence[str], total_steps: int, start_step: int = 0):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir), purge_step=start_step if start_step else None)
        self.task_names = list(task_names)
        self.total_steps = total_steps
        self.t0 = time.time()
        self.step0 = start_step
        self._last_print = 0.0

    def scalars(self, step: int, values: dict[str, Any]) -> None:
        """Write scalars; a ``[T]`` array becomes ``<key>/<task name>`` per task plus ``<key>/mean``."""
        for key, v in values.items():
            arr = np.asarray(v, dtype=np.float64)
            if arr.ndim == 0:
                if np.isfinite(arr):
                    self.writer.add_scalar(key, float(arr), step)
            elif arr.shape == (len(self.task_names),):
                for name, x in zip(self.task_names, arr):
                    if np.isfinite(x):
                        self.writer.add_scalar(f"{key}/{name}", float(x), step)
                if np.isfinite(arr).any():
                    self.writer.add_scalar(f"{key}/mean", float(np.nanmean(arr)), step)

    def diagnostics(self, step: int, prefix: str, diag: dict[str, Any]) -> None:
        """Gradient-conflict diagnostics: cosine image, conflict fraction, norms, condition number."""
        from mtrl.surgery.diagnostics import cosine_image

        self.writer.add_image(f"{prefix}/cosine", cosine_image(diag["cosine"]), step)
        self.scalars(step, {f"{prefix}/conflict_fraction": diag["conflict_fraction"],
                            f"{prefix}/condition_number": diag["condition_number"],
                            f"{prefix}/grad_norm": diag["grad_norm"]})

    def matrix(self, step: int, tag: str, m: np.ndarray) -> None:
        """A matrix as an image (blue positive, red negative, scaled by its largest magnitude)."""
        from mtrl.surgery.diagnostics import cosine_image

        m = np.asarray(m, np.float64)
        self.writer.add_image(tag, cosine_image(m / max(float(np.abs(m).max()), 1e-12)), step)

    def video(self, step: int, tag: str, frames: list[np.ndarray], fps: int = 15) -> None:
        """A GIF in TensorBoard's image panel (the encoding ``add_video`` produces, without moviepy)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        from mtrl.video import gif_bytes

        h, w = frames[0].shape[:2]
        img = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=gif_bytes(frames, fps))
        self.writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=img)]), step)

    def episodes(self, step: int, new: dict[int, np.ndarray]) -> None:
        """Per-task return, success and episode length of the episodes that just ended."""
        for t, rows in new.items():
            name = self.task_names[t]
            self.writer.add_scalar(f"task/{name}/return", float(rows[:, 0].mean()), step)
            self.writer.add_scalar(f"task/{name}/success", float(rows[:, 1].mean()), step)
            self.writer.add_scalar(f"task/{name}/episode_length", float(rows[:, 2].mean()), step)

    def progress(self, step: int, stats: EpisodeStats, min_interval: float = 2.0, force: bool = False) -> str | None:
        """Print and return one progress line, at most one per ``min_interval`` seconds unless ``force``."""
        now = time.time()
        if not force and now - self._last_print < min_interval:
            return None
        self._last_print = now
        elapsed = max(time.time() - self.t0, 1e-9)
        rate = (step - self.step0) / elapsed
        eta = max(self.total_steps - step, 0) / rate if rate > 0 else float("inf")
        ret = np.nanmean(stats.per_task(0)) if np.isfinite(stats.per_task(0)).any() else float("nan")
        line = (f"[{100 * step / self.total_steps:5.1f}%] step {step:,}/{self.total_steps:,} | "
                f"{rate:,.0f} steps/s | ETA {_fmt(eta)} | success {stats.mean_success():.2f} | return {ret:.2f}")
        print(line, flush=True, file=sys.stdout)
        return line

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def _fmt(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
