"""Update time of each network architecture at T=10 (MT10 sizes) relative to the one-hot MLP.

One whole MT-SAC update (critic, actor, temperatures; 400x3 trunks, 128 transitions per task,
obs 39 + 10 one-hot, 4 actions) per architecture, with ``surgery: mean`` (plain backward) and
``surgery: pcgrad`` (vmapped per-task gradients), interleaved round by round so machine noise
hits every architecture alike; the median of ``--reps`` rounds is reported, with the ratio to
``mlp`` under the same surgery and the parameter counts (total and per-task, actor + critic).

    .venv/bin/python benchmarks/speed_archs.py [--reps 7] [--threads 1] [--archs mlp moore ...]
    .venv/bin/python benchmarks/speed_archs.py --archs mlp paco paco:compose=false   # with arch_args
    python3 benchmarks/speed_archs.py --device cuda --out speed_archs_gpu.json       # the learner on a GPU

Prints JSON and writes it to ``benchmarks/results/speed_archs.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import yaml
from speed_surgery import ACT, OBS, PER, T, batch  # the MT10-size batch and sizes

from mtrl.agents import MTSAC, SACConfig, archs
from mtrl.envs.descriptions import METAWORLD

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent


def parse_arch(spec: str) -> tuple[str, dict]:
    """``paco:compose=false,sets=3`` -> ``("paco", {"compose": False, "sets": 3})`` (values read as YAML)."""
    name, _, rest = spec.partition(":")
    kw = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        kw[k] = yaml.safe_load(v)
    archs.check_args(name, kw)
    return name, kw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--archs", nargs="+", default=list(archs.ARCHS),
                   help="architecture names, each optionally with arch_args: NAME:KEY=VALUE[,KEY=VALUE]")
    p.add_argument("--surgery", nargs="+", default=["mean", "pcgrad"])
    p.add_argument("--device", default="cpu", help="the learner's device (cuda: timed with a synchronize)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/speed_archs.json"))
    args = p.parse_args()
    sync = (lambda: torch.cuda.synchronize(args.device)) if args.device.startswith("cuda") else (lambda: None)
    torch.set_num_threads(args.threads)
    box = gym.spaces.Box(-1, 1, (ACT,), np.float32)
    descs = list(METAWORLD.values())[:T]
    agents = {}
    for s in args.surgery:
        for a in args.archs:
            name, kw = parse_arch(a)
            extra = {"descriptions": descs} if archs.get(name).needs_descriptions else {}
            agents[(a, s)] = MTSAC(SACConfig(arch=name, arch_args={**extra, **kw}), OBS, T, box, seed=0, surgery=s,
                                   device=args.device)
    b = batch()
    for agent in agents.values():  # warm-up (allocator, vmap tracing)
        agent.update(b)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in agents}
    for _ in range(args.reps):
        for k, agent in agents.items():
            sync()
            t0 = time.perf_counter()
            agent.update(b)
            sync()
            times[k].append(time.perf_counter() - t0)
    out: dict = {"T": T, "per_task": PER, "hidden": [400, 400, 400], "threads": args.threads, "reps": args.reps,
                 "torch": torch.__version__, "device": args.device, "archs": {}}
    if args.device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(args.device)
    for a in args.archs:
        counts = [archs.count_params(n) for n in (agents[(a, args.surgery[0])].actor, agents[(a, args.surgery[0])].critic)]
        row: dict = {"params": sum(c[0] for c in counts), "params_per_task": sum(c[1] for c in counts)}
        for s in args.surgery:
            ms = 1000 * float(np.median(times[(a, s)]))
            row[f"{s}_ms"] = round(ms, 1)
            row[f"{s}_x_mlp"] = round(ms / (1000 * float(np.median(times[("mlp", s)]))), 2) if "mlp" in args.archs else None
        out["archs"][a] = row
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
