"""MT-SAC update on a GPU against the CPU of the same machine (``device: cuda`` vs ``cpu``).

Times whole ``MTSAC.update()`` calls *including* drawing the batch from a host-memory
:class:`~mtrl.buffers.PerTaskReplay` (pre-filled with random data) and copying it to the
device, as training does. The learner shapes, each on ``cpu`` (all the machine's cores as torch
threads, or ``--threads``) and ``cuda``, interleaved round by round:

- ``mt10-paper``: the MT10 papers' MT-SAC (400x3, one network, batch 128 x 10, float32);
- ``mt10-paper-bf16``: the same with ``sac.precision: bf16``;
- ``mt10-pcgrad``: the same (float32) with ``surgery: pcgrad`` (per-task gradients by vmap);
- ``mt50-paper``: 400x3 on MT50's 50 tasks (batch 6,400);
- ``reach4-fast`` / ``mt10-fast``: ``agents/mtsac-fast.yaml``'s per-task networks as measured
  in session 8 (one 256x2 actor and twin critic per task, bf16, no LayerNorm) on 4 and 10 tasks;
  ``reach4-fast-fp32`` in float32, ``reach4-fast-ln`` float32 with the LayerNorm critic (the
  preset's critic since session 10).

Prints one JSON object per case (median ms per update over the rounds, the CPU/GPU ratio: >1
means the GPU is faster) and writes them to ``--out`` when given. Needs a CUDA build of torch
and a GPU; without one it times the CPU alone.

    python benchmarks/speed_device.py [--updates 50] [--rounds 3] [--threads 0] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import gymnasium as gym
import numpy as np
import torch

from mtrl.agents import MTSAC, SACConfig
from mtrl.buffers import PerTaskReplay

warnings.filterwarnings("ignore")
OBS, ACT = 39, 4
BOX = gym.spaces.Box(-1, 1, (ACT,), np.float32)
PAPER = dict(hidden=[400, 400, 400], batch_per_task=128)
FAST = dict(hidden=[256, 256], heads="ensemble", precision="bf16", batch_per_task=128)
CASES = {  # name: (tasks, SACConfig fields, surgery)
    "mt10-paper": (10, PAPER, "mean"),
    "mt10-paper-bf16": (10, {**PAPER, "precision": "bf16"}, "mean"),
    "mt10-pcgrad": (10, PAPER, "pcgrad"),
    "mt50-paper": (50, PAPER, "mean"),
    "reach4-fast": (4, FAST, "mean"),
    # float32 (what precision auto picks on a CPU without bfloat16 instructions), and with the
    # LayerNorm critic (sac.critic_layer_norm)
    "reach4-fast-fp32": (4, {**FAST, "precision": "fp32"}, "mean"),
    "reach4-fast-ln": (4, {**FAST, "precision": "fp32", "critic_layer_norm": True}, "mean"),
    "mt10-fast": (10, FAST, "mean"),
}


def _setup(T: int, fields: dict, surgery: str, device: str, fill: int):
    agent = MTSAC(SACConfig(**fields), OBS + T, T, BOX, seed=0, surgery=surgery, device=device)
    buf = PerTaskReplay(T, fill, OBS + T, ACT)
    r = np.random.default_rng(0)
    n = fill * T
    buf.add(np.repeat(np.arange(T), fill), r.normal(size=(n, OBS + T)), r.uniform(-1, 1, (n, ACT)),
            r.normal(size=n), r.normal(size=(n, OBS + T)), np.zeros(n))
    return agent, buf


def _time(agent: MTSAC, buf: PerTaskReplay, updates: int, seed: int) -> float:
    """Seconds per update (batch sampling and the host-to-device copy included)."""
    rng = np.random.default_rng(seed)
    sync = torch.cuda.synchronize if agent.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(updates):
        agent.update(buf.sample(agent.per_task, rng))
    sync()
    return (time.perf_counter() - t0) / updates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=50, help="timed updates per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU torch threads (0: torch's default, all cores)")
    ap.add_argument("--fill", type=int, default=20_000, help="transitions per task in the replay buffer")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--out", default=None, help="append one JSON line per case to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    meta = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    for name in args.cases:
        T, fields, surgery = CASES[name]
        setups = {d: _setup(T, fields, surgery, d, args.fill) for d in devices}
        for agent, buf in setups.values():  # warm-up: allocator, kernels, autotuning
            _time(agent, buf, 5, seed=1)
        times: dict[str, list[float]] = {d: [] for d in devices}
        for r in range(args.rounds):
            for d, (agent, buf) in setups.items():
                times[d].append(_time(agent, buf, args.updates, seed=100 + r))
        ms = {d: round(statistics.median(v) * 1e3, 3) for d, v in times.items()}
        row = {"case": name, "tasks": T, "batch": T * fields["batch_per_task"], "surgery": surgery,
               "precision": fields.get("precision", "fp32"), "heads": fields.get("heads", "single"),
               "ms_per_update": ms, **meta, "updates": args.updates, "rounds": args.rounds}
        if "cuda" in ms:
            row["cpu_over_gpu"] = round(ms["cpu"] / ms["cuda"], 2)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
