"""Checkpoints that are atomic, verified and safe to open.

Files in ``checkpoints/`` per saved step N:

- ``step_N.pt``: weights, optimiser states, counters, RNG states, curriculum and reward-model
  state. Only tensors, numbers, strings and containers (NumPy arrays are stored as tensors
  and restored), so it is read with ``torch.load(weights_only=True)``: opening a run folder
  from elsewhere (``mtrl eval``, ``mtrl record``) never unpickles arbitrary objects.
- ``step_N.env.pkl``: the runners' pickled env state (optional). Only ``mtrl train --resume``
  of one's own run reads it.
- ``step_N.json``: a manifest with the size and SHA-256 of the two files above.

Each file is written to a temporary name, fsynced and renamed; the ``.pt`` comes last, so a
``.pt`` implies its env file and manifest. A process killed mid-write leaves at most a
``*.tmp`` file (ignored) and the previous checkpoint intact. A ``.pt`` whose size or hash does
not match its manifest is treated as corrupt and skipped for the previous one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrl.errors import MtrlError

_NDARRAY = "__ndarray__"  # marks a NumPy array stored as a tensor
_DEQUE = "__deque__"  # marks a collections.deque stored as a list (with its maxlen)


class UnsafeCheckpoint(MtrlError):
    """A checkpoint holds objects that would run code when unpickled; it is never loaded."""


def rng_state() -> dict[str, Any]:
    """Global RNG states (Python, NumPy, torch)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]  # a weights-only load gives lists back where Python wants tuples
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])


def to_safe(obj: Any, where: str = "state") -> Any:
    """``obj`` with NumPy arrays as marked tensors and NumPy scalars as Python numbers, so that
    ``torch.load(weights_only=True)`` reads it back. Anything else that is not a tensor,
    number, string, bytes or container is a programming error, named by its path."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor, torch.dtype, torch.Size)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"checkpoint field {where}: NumPy array of dtype {obj.dtype} cannot be stored safely")
        return {_NDARRAY: torch.from_numpy(np.array(obj, order="C", copy=True))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):  # subclasses (defaultdict, ...) become the plain containers weights_only reads
        kind = OrderedDict if isinstance(obj, OrderedDict) else dict
        return kind((k, to_safe(v, f"{where}/{k}")) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):  # a namedtuple becomes a tuple
        return (list if isinstance(obj, list) else tuple)(to_safe(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, deque):
        return {_DEQUE: [to_safe(v, f"{where}[{i}]") for i, v in enumerate(obj)], "maxlen": obj.maxlen}
    raise TypeError(f"checkpoint field {where} holds a {type(obj).__name__}; store tensors, arrays, numbers, "
                    "strings or containers of them")


def from_safe(obj: Any) -> Any:
    """Inverse of :func:`to_safe` (up to container subclasses, which come back as dict, list, tuple)."""
    if isinstance(obj, dict):
        if len(obj) == 1 and _NDARRAY in obj:
            return obj[_NDARRAY].numpy()
        if len(obj) == 2 and _DEQUE in obj:
            return deque((from_safe(v) for v in obj[_DEQUE]), maxlen=obj["maxlen"])
        return type(obj)((k, from_safe(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_safe(v) for v in obj)
    return obj


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _digest(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def env_path(path: Path) -> Path:
    """The env-state file that belongs to checkpoint ``path``."""
    return path.with_name(path.name.removesuffix(".pt") + ".env.pkl")


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".pt") + ".json")


def save(state: dict[str, Any], ckpt_dir: Path, step: int, keep: int = 3,
         env_state: list[bytes] | None = None) -> Path:
    """Save ``state`` (and the runners' ``env_state``) as checkpoint ``step_<step>.pt`` with its
    manifest, atomically, and keep only the newest ``keep`` checkpoints."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"step_{step:012d}.pt"
    buf = io.BytesIO()
    torch.save(to_safe(state), buf)
    data = buf.getvalue()
    manifest = {"step": step, "files": {path.name: _digest(data)}}
    if env_state is not None:
        env_data = pickle.dumps(list(env_state), protocol=pickle.HIGHEST_PROTOCOL)
        _write(env_path(path), env_data)
        manifest["files"][env_path(path).name] = _digest(env_data)
    else:
        env_path(path).unlink(missing_ok=True)  # a stale one from an earlier save of this step
    _write(manifest_path(path), json.dumps(manifest, indent=1).encode())
    _write(path, data)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        for f in (old, env_path(old), manifest_path(old)):
            f.unlink(missing_ok=True)
    return path


def set_aside_newer(ckpt_dir: Path, step: int) -> list[Path]:
    """Move checkpoints newer than ``step`` (and their env, manifest and replay files) into
    ``ckpt_dir/abandoned_<time>/``: resuming from an older checkpoint starts a new branch, and a
    later plain ``--resume`` must not pick the abandoned one. Nothing is deleted."""
    import time

    newer = [p for p in list_checkpoints(ckpt_dir) if int(p.stem.removeprefix("step_")) > step]
    if not newer:
        return []
    dest = ckpt_dir / f"abandoned_{time.strftime('%Y%m%d-%H%M%S')}"
    dest.mkdir()
    for p in newer:
        n = p.stem.removeprefix("step_")
        for f in (p, env_path(p), manifest_path(p), ckpt_dir / f"replay_{n}.npz"):
            if f.exists():
                f.replace(dest / f.name)
    print(f"note: {len(newer)} newer checkpoint(s) moved to {dest} (this resume starts a new branch)", flush=True)
    return newer


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoints in ``ckpt_dir``, oldest first."""
    return sorted(ckpt_dir.glob("step_*.pt")) if ckpt_dir.is_dir() else []


def latest(run_dir: Path) -> Path:
    """The newest checkpoint of a run, or a clear error."""
    ckpts = list_checkpoints(run_dir / "checkpoints")
    if not ckpts:
        raise MtrlError(f"no checkpoints in {run_dir / 'checkpoints'}; nothing to resume or evaluate")
    return ckpts[-1]


def latest_intact(run_dir: Path, trusted: bool = False, with_env: bool = False) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint that reads back, and its state. A corrupt or truncated newer one
    (a killed copy, a full disk) is skipped with a warning naming it; none readable is an error.
    ``with_env`` (resuming): the runners' env file its manifest lists must match too.
    A checkpoint that would run code is refused outright (:class:`UnsafeCheckpoint`)."""
    import warnings

    ckpts = list_checkpoints(Path(run_dir) / "checkpoints")
    if not ckpts:
        raise MtrlError(f"no checkpoints in {Path(run_dir) / 'checkpoints'}; nothing to resume or evaluate")
    for path in reversed(ckpts):
        try:
            state = load(path, trusted)
            if with_env:
                _env_bytes(path)
            return path, state
        except UnsafeCheckpoint:
            raise
        except MtrlError as exc:
            warnings.warn(f"skipping unreadable checkpoint {path.name} ({exc}); trying the one before", stacklevel=2)
    raise MtrlError(f"no readable checkpoint in {Path(run_dir) / 'checkpoints'} ({len(ckpts)} found, all corrupt)")


def _verify(path: Path, data: bytes) -> None:
    mpath = manifest_path(path)
    if not mpath.is_file():
        return  # written before manifests existed: the load itself is the check
    try:
        expected = json.loads(mpath.read_text())["files"][path.name]
    except (ValueError, KeyError) as exc:
        raise MtrlError(f"manifest {mpath.name} is unreadable ({type(exc).__name__})") from None
    if _digest(data) != expected:
        raise MtrlError(f"{path.name} does not match its manifest (size {len(data)} vs {expected['size']}, "
                        "or a different SHA-256)")


def load(path: Path, trusted: bool = False) -> dict[str, Any]:
    """A checkpoint's state, read with ``weights_only=True`` after checking its manifest.

    ``trusted=True`` (resuming one's own run, or ``--trust``) also accepts a checkpoint written
    by an mtrl before safe checkpoints (a full pickle, no manifest); otherwise such a file, and
    any file whose pickle names other objects, raises :class:`UnsafeCheckpoint`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MtrlError(f"cannot read checkpoint {path}: {exc}") from None
    _verify(path, data)
    try:
        return from_safe(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise MtrlError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
        if not trusted or manifest_path(path).is_file():
            raise UnsafeCheckpoint(
                f"refusing to load {path}: it holds pickled objects other than tensors, numbers and containers, "
                "which could run code. If it is an older checkpoint of your own run, pass --trust") from None
    except Exception as exc:  # noqa: BLE001 - any other failure means a corrupt file
        raise MtrlError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
    try:  # a trusted checkpoint from before manifests: the full pickle, env state inside
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise MtrlError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None


def load_env(path: Path) -> list[bytes] | None:
    """The runners' env state saved next to checkpoint ``path`` (None if there is none).
    Unpickles: called only when resuming one's own run."""
    data = _env_bytes(Path(path))
    return None if data is None else pickle.loads(data)  # noqa: S301 - one's own run, by design (module docstring)


def _env_bytes(path: Path) -> bytes | None:
    """The env file of checkpoint ``path`` checked against its manifest (None when there is none);
    a file the manifest lists but that is missing or differs raises."""
    epath = env_path(path)
    mpath = manifest_path(path)
    try:
        expected = json.loads(mpath.read_text())["files"].get(epath.name) if mpath.is_file() else None
    except (ValueError, KeyError):
        expected = None  # load() already refused an unreadable manifest
    if not epath.is_file():
        if expected is not None:
            raise MtrlError(f"{epath.name}, listed in {mpath.name}, is missing; resume from an older checkpoint "
                            "with --checkpoint FILE")
        return None
    data = epath.read_bytes()
    if mpath.is_file() and (expected is None or _digest(data) != expected):
        raise MtrlError(f"{epath} does not match its manifest; resume from an older checkpoint with --checkpoint FILE")
    return data
