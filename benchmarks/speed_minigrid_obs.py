"""MiniGrid observation speed: MiniGrid's ``gen_obs`` against mtrl's (``mtrl/envs/minigrid_obs.py``),
and a whole mtrl MiniGrid env step with each, on the MT5 tasks; interleaved in one run, ratios.

    .venv/bin/python benchmarks/speed_minigrid_obs.py [--steps 3000] [--rounds 5]

Prints JSON and writes ``benchmarks/results/speed_minigrid_obs.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mtrl.envs import get
from mtrl.envs.tasks import build_task_env

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/speed_minigrid_obs.json"))
    args = p.parse_args()
    from minigrid.minigrid_env import MiniGridEnv

    out: dict = {"steps": args.steps, "rounds": args.rounds, "tasks": {}}
    for spec in get("minigrid/MT5").tasks():
        env = build_task_env(spec, seed=0)  # mtrl's env: the fast gen_obs installed
        base = env.unwrapped
        fast = base.gen_obs
        times = {"gen_obs_minigrid": [], "gen_obs_mtrl": [], "step_minigrid": [], "step_mtrl": []}
        rng = np.random.default_rng(0)
        for _ in range(args.rounds):
            env.reset(seed=0)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                MiniGridEnv.gen_obs(base)
            times["gen_obs_minigrid"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fast()
            times["gen_obs_mtrl"].append(time.perf_counter() - t0)
            for label, impl in (("step_minigrid", MiniGridEnv.gen_obs.__get__(base)), ("step_mtrl", fast)):
                base.gen_obs = impl
                env.reset(seed=0)
                acts = rng.integers(0, 3, args.steps)
                t0 = time.perf_counter()
                for a in acts:
                    _, _, term, trunc, _ = env.step(int(a))
                    if term or trunc:
                        env.reset()
                times[label].append(time.perf_counter() - t0)
            base.gen_obs = fast
        med = {k: float(np.median(v)) for k, v in times.items()}
        out["tasks"][spec.name] = {"gen_obs_speedup": round(med["gen_obs_minigrid"] / med["gen_obs_mtrl"], 2),
                                   "step_speedup": round(med["step_minigrid"] / med["step_mtrl"], 2),
                                   "steps_per_s_minigrid": round(args.steps / med["step_minigrid"]),
                                   "steps_per_s_mtrl": round(args.steps / med["step_mtrl"])}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
