"""Learner update speed: fused Adam and bfloat16 against the float32, loop-Adam update, side by side.

For each learner shape, whole ``update()`` calls on one fixed batch (same seed, same weights at
the start), interleaved round by round so that a busy machine slows every variant alike:

- ``loop``: Adam as PyTorch builds it by default on a CPU (a Python loop over tensors);
- ``fused``: :func:`mtrl.agents.optim.adam` (``fused=True``), what the learners use;
- ``fused+bf16``: and ``sac.precision=bf16`` (MT-SAC only).

Also times the optimiser step alone (gradients in place). Prints JSON: median ms per update and
the speed-up of each variant over ``loop``.

    .venv/bin/python benchmarks/speed_optim.py [--rounds 5] [--updates 20] [--threads 1]
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

from mtrl.agents import MTPPO, MTSAC, PPOConfig, SACConfig

warnings.filterwarnings("ignore")
BOX = gym.spaces.Box(-1, 1, (4,), np.float32)


def _loop_adam(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The same optimiser without the fused kernel (PyTorch's CPU default)."""
    g = opt.param_groups[0]
    kw = {k: g[k] for k in ("lr", "eps", "weight_decay", "betas")}
    return type(opt)([p for grp in opt.param_groups for p in grp["params"]], **kw)


def sac_case(T: int, hidden: list[int], heads: str, precision: str, fused: bool):
    agent = MTSAC(SACConfig(hidden=hidden, heads=heads, batch_per_task=128, precision=precision), 39 + T, T, BOX,
                  seed=0)
    if not fused:
        agent.actor_opt, agent.critic_opt = _loop_adam(agent.actor_opt), _loop_adam(agent.critic_opt)
        agent.alpha_opt = _loop_adam(agent.alpha_opt)
    r = np.random.default_rng(0)
    n = 128 * T
    batch = {"obs": r.normal(size=(n, 39 + T)).astype(np.float32), "actions": r.uniform(-1, 1, (n, 4)).astype(np.float32),
             "rewards": r.normal(size=n).astype(np.float32), "next_obs": r.normal(size=(n, 39 + T)).astype(np.float32),
             "terminated": np.zeros(n, np.float32), "task_ids": np.repeat(np.arange(T), 128)}
    return (lambda: agent.update(batch)), [agent.actor_opt, agent.critic_opt]


def ppo_case(T: int, fused: bool):
    obs_dim, slots, steps = 150, 2 * T, 128
    agent = MTPPO(PPOConfig(), obs_dim, T, gym.spaces.Discrete(7), seed=0)
    if not fused:
        agent.opt = _loop_adam(agent.opt)
    r = np.random.default_rng(0)
    roll = {"obs": r.normal(size=(steps, slots, obs_dim)).astype(np.float32),
            "actions": r.integers(0, 7, (steps, slots)), "logp": np.full((steps, slots), -np.log(7), np.float32),
            "values": r.normal(size=(steps, slots)).astype(np.float32),
            "rewards": r.normal(size=(steps, slots)).astype(np.float32),
            "terminated": np.zeros((steps, slots), bool), "truncated": np.zeros((steps, slots), bool),
            "bootstrap": np.zeros((steps, slots), np.float32), "task_ids": np.tile(np.repeat(np.arange(T), 2), (steps, 1)),
            "last_values": np.zeros(slots, np.float32)}
    return (lambda: agent.update(roll)), [agent.opt]


def time_calls(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shapes = {
        "mtsac T4 256x2 ensemble": lambda pr, f: sac_case(4, [256, 256], "ensemble", pr, f),
        "mtsac T4 256x2 shared": lambda pr, f: sac_case(4, [256, 256], "single", pr, f),
        "mtsac T10 400x3 shared": lambda pr, f: sac_case(10, [400, 400, 400], "single", pr, f),
    }
    cases: dict[str, dict[str, tuple]] = {}
    for name, make in shapes.items():
        cases[name] = {"loop": make("fp32", False), "fused": make("fp32", True), "fused+bf16": make("bf16", True)}
    cases["mtppo T5 64x64"] = {"loop": ppo_case(5, False), "fused": ppo_case(5, True)}
    times: dict[str, dict[str, list[float]]] = {c: {v: [] for v in vs} for c, vs in cases.items()}
    step_times: dict[str, dict[str, list[float]]] = {c: {v: [] for v in vs} for c, vs in cases.items()}
    for fn_opts in cases.values():  # warm-up (and gradients in place for the optimiser-only timing)
        for fn, _ in fn_opts.values():
            for _ in range(3):
                fn()
    for _ in range(args.rounds):
        for c, vs in cases.items():
            for v, (fn, opts) in vs.items():
                times[c][v].append(time_calls(fn, args.updates))
                step_times[c][v].append(time_calls(lambda opts=opts: [o.step() for o in opts], args.updates))
    out = {"threads": args.threads, "rounds": args.rounds, "updates_per_round": args.updates, "cases": {}}
    for c, vs in times.items():
        med = {v: statistics.median(ts) for v, ts in vs.items()}
        med_step = {v: statistics.median(ts) for v, ts in step_times[c].items()}
        out["cases"][c] = {"update_ms": {v: round(m, 2) for v, m in med.items()},
                           "speedup_over_loop": {v: round(med["loop"] / m, 2) for v, m in med.items()},
                           "optimizer_step_ms": {v: round(m, 3) for v, m in med_step.items()}}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
