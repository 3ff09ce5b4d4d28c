"""Soak test (not a test in the suite): MT-SAC on reach4 with 2 Ray runners for ``--minutes``,
one runner process killed with SIGKILL every 2-3 minutes (seeded), memory of every process
sampled every ``--sample-every`` seconds.

    .venv/bin/python benchmarks/soak.py --minutes 30

Reports, as JSON on stdout and in ``OUT/summary.json``: env steps trained, runner kills and the
restarts the run counted, env steps per second before the first kill and after it, and per
process kind (trainer, runner, raylet, gcs) the resident memory at start, after a 5-minute
warm-up, at the end and at its peak. ``OUT/memory.jsonl`` holds every sample and
``OUT/memory.png`` the curves. The run is stopped with SIGTERM at the end (its clean-stop path).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def processes() -> dict[int, str]:
    """pid -> kind for the processes of this soak (trainer found by its run folder)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ray::Runner" in cmd:
            out[int(d.name)] = "runner"
        elif "raylet" in cmd and "ray/core" in cmd:
            out[int(d.name)] = "raylet"
        elif "gcs_server" in cmd:
            out[int(d.name)] = "gcs"
    return out


def rss_mb(pid: int) -> float | None:
    try:
        m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(m.group(1)) / 1024 if m else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--kill-min", type=float, default=120, help="seconds between kills, lower bound")
    p.add_argument("--kill-max", type=float, default=180)
    p.add_argument("--sample-every", type=float, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/soak"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "runs" / "soak"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    rng = random.Random(args.seed)
    log = open(out / "train.log", "w")
    trainer = subprocess.Popen(
        [sys.executable, "-m", "mtrl.cli", "train", "envs/reach4.yaml", "agents/mtsac.yaml", "runners=2",
         "runner_cpus=0.5", "total_steps=100000000", "eval_every=0", "checkpoint_every=50000",
         "runner_max_restarts=50", f"run_dir={run_dir}", "sac.hidden=[256,256]"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()
    end = t0 + args.minutes * 60
    next_kill = t0 + rng.uniform(args.kill_min, args.kill_max)
    kills: list[dict] = []
    samples = open(out / "memory.jsonl", "w")
    while time.time() < end and trainer.poll() is None:
        procs = processes()
        row = {"t": round(time.time() - t0, 1), "trainer": rss_mb(trainer.pid)}
        for pid, kind in procs.items():
            row[f"{kind}:{pid}"] = rss_mb(pid)
        samples.write(json.dumps(row) + "\n")
        samples.flush()
        if time.time() >= next_kill:
            runners = sorted(pid for pid, k in procs.items() if k == "runner")
            if runners:
                victim = rng.choice(runners)
                os.kill(victim, signal.SIGKILL)
                kills.append({"t": round(time.time() - t0, 1), "pid": victim})
                print(f"[{time.time() - t0:6.0f}s] killed runner pid {victim}", flush=True)
            next_kill = time.time() + rng.uniform(args.kill_min, args.kill_max)
        time.sleep(args.sample_every)
    crashed = trainer.poll() is not None
    if not crashed:
        trainer.send_signal(signal.SIGTERM)
    try:
        trainer.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(trainer.pid, signal.SIGKILL)
    log.close()
    summary = summarise(out, run_dir, kills, crashed, trainer.returncode, time.time() - t0)
    print(json.dumps(summary, indent=2))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def summarise(out: Path, run_dir: Path, kills: list[dict], crashed: bool, rc: int | None, wall: float) -> dict:
    from mtrl import checkpoint

    text = (out / "train.log").read_text()
    restarts_printed = len(re.findall(r"runner \d+ died", text))
    state = checkpoint.load(checkpoint.latest(run_dir))
    # progress lines: "[ x%] step N/..." -> (step) in order; the time axis from TensorBoard is not needed
    rows = [json.loads(line) for line in (out / "memory.jsonl").read_text().splitlines()]
    kinds: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        for key, v in r.items():
            if key == "t" or v is None:
                continue
            kinds.setdefault(key.split(":")[0], []).append((r["t"], v))
    memory = {}
    for kind, series in kinds.items():
        after = [v for t, v in series if t >= 300] or [v for _, v in series]
        memory[kind] = {"start_mb": round(series[0][1]), "after_5min_mb": round(after[0]),
                        "end_mb": round(series[-1][1]), "peak_mb": round(max(v for _, v in series))}
    rates = [float(m.replace(",", "")) for m in re.findall(r"\| ([\d,]+) steps/s", text)]
    return {"minutes": round(wall / 60, 1), "exit_code": rc, "crashed": crashed, "env_steps": int(state["step"]),
            "runner_kills": len(kills), "runner_restarts_counted": int(state.get("runner_restarts", -1)),
            "restarts_printed": restarts_printed, "last_progress_steps_per_s": rates[-1] if rates else None,
            "stopped_cleanly": "continue with: mtrl train --resume" in text, "memory": memory,
            "kills": kills}


if __name__ == "__main__":
    main()
