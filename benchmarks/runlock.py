"""A per-run lock for the resumable benchmarks: two copies of a script pointed at the same results
folder (say, one started by hand while a chain runs) must not train the same run into the same
run folder. ``fcntl.flock`` on ``OUT/locks/NAME.lock``; the kernel drops it when the process dies,
so a killed benchmark never leaves a stale lock."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterator
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


def load_rows(path: Path) -> list[dict]:
    """The JSON lines of a results file (none if it does not exist)."""
    path = Path(path)
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def run_once(out: Path, name: str, done: Callable[[dict], bool], run: Callable[[], dict]) -> dict | None:
    """The resumable benchmarks' step: unless another process holds run ``name`` (:func:`run_lock`)
    or a line of ``OUT/results.jsonl`` already satisfies ``done``, call ``run()`` and append the
    row it returns; returns that row (None when skipped)."""
    results = Path(out) / "results.jsonl"
    with run_lock(out, name) as mine:
        if not mine or any(done(r) for r in load_rows(results)):
            return None
        row = run()
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        return row
