"""Update throughput of ``learners: N`` data-parallel MT-SAC learners against one learner.

MT10 sizes (obs 39 + 10 one-hot, 4 actions, 400x3 trunks, 128 transitions per task), one
torch thread per learner; ``--reps`` updates each, alternating the configurations round by
round so machine noise hits all alike. The one-learner figure is the in-process learner
(what ``learners: 1`` runs); N learners are Ray actors on a local cluster. Prints JSON with
updates per second and the speed-up over one learner, and writes it to
``benchmarks/results/speed_learners.json``.

    .venv/bin/python benchmarks/speed_learners.py [--learners 2] [--reps 20] [--surgery mean pcgrad]
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
from speed_surgery import ACT, OBS, PER, T, batch  # the MT10-size batch and sizes

from mtrl.agents import MTSAC, SACConfig
from mtrl.learners import LearnerGroup

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--learners", type=int, default=2)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--surgery", nargs="+", default=["mean", "pcgrad"])
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/speed_learners.json"))
    args = p.parse_args()
    import ray

    torch.set_num_threads(1)
    # logical CPUs for every group built (one per surgery method); only one group works at a time
    ray.init(num_cpus=args.learners * len(args.surgery), include_dashboard=False, logging_level="error", log_to_driver=False)
    box = gym.spaces.Box(-1, 1, (ACT,), np.float32)
    agents = {}
    for s in args.surgery:
        agents[(1, s)] = MTSAC(SACConfig(), OBS, T, box, seed=0, surgery=s)
        agents[(args.learners, s)] = LearnerGroup(MTSAC, SACConfig(), OBS, T, box, args.learners, seed=0, surgery=s)
    b = batch(0)
    for a in agents.values():
        a.update(b)  # warm-up
    times: dict = {k: [] for k in agents}
    for _ in range(args.reps):
        for k, a in agents.items():
            t0 = time.perf_counter()
            a.update(b)
            times[k].append(time.perf_counter() - t0)
    out: dict = {"T": T, "per_task": PER, "hidden": [400, 400, 400], "reps": args.reps, "torch": torch.__version__,
                 "cpus": __import__("os").cpu_count(), "results": {}}
    for s in args.surgery:
        one, many = float(np.median(times[(1, s)])), float(np.median(times[(args.learners, s)]))
        out["results"][s] = {"one_learner_ms": round(1000 * one, 1), f"{args.learners}_learners_ms": round(1000 * many, 1),
                             "speedup": round(one / many, 2)}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    ray.shutdown()


if __name__ == "__main__":
    main()
