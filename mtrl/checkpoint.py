"""Atomic checkpoints: write to a temporary file in the same folder, fsync, then rename.

A process killed mid-write leaves at most a ``*.tmp`` file that is ignored; the previous
checkpoint stays intact. Files are ``checkpoints/step_<global step>.pt``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrl.errors import MtrlError


def rng_state() -> dict[str, Any]:
    """Global RNG states (Python, NumPy, torch)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save(state: dict[str, Any], ckpt_dir: Path, step: int, keep: int = 3) -> Path:
    """Save ``state`` as ``step_<step>.pt`` atomically and keep only the newest ``keep`` files."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"step_{step:012d}.pt"
    tmp = ckpt_dir / f".{path.name}.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoints in ``ckpt_dir``, oldest first."""
    return sorted(ckpt_dir.glob("step_*.pt")) if ckpt_dir.is_dir() else []


def latest(run_dir: Path) -> Path:
    """The newest checkpoint of a run, or a clear error."""
    ckpts = list_checkpoints(run_dir / "checkpoints")
    if not ckpts:
        raise MtrlError(f"no checkpoints in {run_dir / 'checkpoints'}; nothing to resume or evaluate")
    return ckpts[-1]


def latest_intact(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint that reads back, and its state. A corrupt or truncated newer one
    (a killed copy, a full disk) is skipped with a warning naming it; none readable is an error."""
    import warnings

    ckpts = list_checkpoints(Path(run_dir) / "checkpoints")
    if not ckpts:
        raise MtrlError(f"no checkpoints in {Path(run_dir) / 'checkpoints'}; nothing to resume or evaluate")
    for path in reversed(ckpts):
        try:
            return path, load(path)
        except MtrlError as exc:
            warnings.warn(f"skipping unreadable checkpoint {path.name} ({exc}); trying the one before", stacklevel=2)
    raise MtrlError(f"no readable checkpoint in {Path(run_dir) / 'checkpoints'} ({len(ckpts)} found, all corrupt)")


def load(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise MtrlError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
