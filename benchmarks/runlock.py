"""A per-run lock for the resumable benchmarks: two copies of a script pointed at the same results
folder (say, one started by hand while a chain runs) must not train the same run into the same
run folder. ``fcntl.flock`` on ``OUT/locks/NAME.lock``; the kernel drops it when the process dies,
so a killed benchmark never leaves a stale lock."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def run_lock(out: Path, name: str) -> Iterator[bool]:
    """Try to hold the lock of run ``name`` under ``out``; yields False (and prints why) when
    another process holds it, so the caller skips that run."""
    path = Path(out) / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"skipping {name}: another process is running it ({path})", flush=True)
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
