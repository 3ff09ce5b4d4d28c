"""Env steps/s of mtrl's runners (with batched policy inference) vs the raw environments.

For each task set (MiniGrid MT5, Meta-World MT10) it measures, in one run:

- ``raw``: the plain environments stepped with random actions in one process (MiniGrid: the
  gymnasium envs in a loop, with the observation code mtrl installs on them,
  :mod:`mtrl.envs.minigrid_obs`, so that raw and runners step the same simulator; ``raw_shipped``:
  MiniGrid's own, ~3x slower; MT10: Meta-World's own ``gym.make_vec("Meta-World/MT10", "sync")``);
- ``inprocess``: an mtrl Runner (MT-PPO policy inference on every step) in this process;
- ``ray2``: a RunnerPool of 2 Ray actor runners (1 CPU each), weights sent every rollout.

and prints JSON with steps/s and the ratios ``inprocess / raw`` and ``ray2 / (2 x raw)``
("per core"). Usage: ``python benchmarks/speed_runners.py [--seconds 8] [--sets minigrid mt10]``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import gymnasium as gym
import numpy as np
import torch

warnings.filterwarnings("ignore")

SETS = {"minigrid": ("minigrid/MT5", 8), "mt10": ("metaworld/MT10", 1)}


def raw_rate(name: str, seconds: float, fast_obs: bool = True) -> float:
    if name == "minigrid":
        import minigrid  # noqa: F401

        from mtrl.envs import get
        from mtrl.envs.minigrid_obs import install

        envs = [gym.make(t.env_id) for t in get("minigrid/MT5").train for _ in range(SETS[name][1])]
        for i, e in enumerate(envs):
            if fast_obs:
                assert install(e), f"mtrl's observation code does not apply to {e.spec.id}"
            e.reset(seed=i)
            e.action_space.seed(i)
        rng = np.random.default_rng(0)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            acts = rng.integers(0, 7, size=len(envs)).tolist()  # pre-drawn: the loop is env steps only
            for e, a in zip(envs, acts):
                _, _, term, trunc, _ = e.step(a)
                if term or trunc:
                    e.reset()
            n += len(envs)
        return n / (time.perf_counter() - t0)
    import metaworld  # noqa: F401

    env = gym.make_vec("Meta-World/MT10", vector_strategy="sync", seed=0)
    env.reset(seed=0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        env.step(env.action_space.sample())
        n += env.num_envs
    rate = n / (time.perf_counter() - t0)
    env.close()
    return rate


def runner_rate(name: str, seconds: float, runners: int) -> float:
    from mtrl.agents import MTPPO, PPOConfig
    from mtrl.envs import make
    from mtrl.runners import RunnerPool

    taskset, ept = SETS[name]
    kw = dict(taskset=taskset, envs_per_task=ept, seed=0)
    probe = make(**kw)
    agent = MTPPO(PPOConfig(), probe.obs_dim, probe.num_tasks, probe.single_action_space)
    pool = RunnerPool(kw, probe.total_slots, agent.policy_spec, runners=runners, seed=0)
    steps = 128  # the MT-PPO preset's rollout length
    pool.sample(steps, agent.policy_state())  # warm-up: builds envs (Meta-World goals) on the runners
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pool.sample(steps, agent.policy_state())
        n += steps * probe.total_slots
    rate = n / (time.perf_counter() - t0)
    pool.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="error", log_to_driver=False)
    results = {}
    for name in args.sets:
        raw = raw_rate(name, args.seconds)
        shipped = raw_rate(name, args.seconds, fast_obs=False) if name == "minigrid" else raw
        inproc = runner_rate(name, args.seconds, 0)
        ray2 = runner_rate(name, args.seconds, 2)
        results[name] = {"taskset": SETS[name][0], "envs_per_task": SETS[name][1],
                         "raw_steps_per_s": round(raw), "raw_shipped_steps_per_s": round(shipped),
                         "inprocess_steps_per_s": round(inproc),
                         "ray2_steps_per_s": round(ray2), "inprocess_over_raw": round(inproc / raw, 3),
                         "ray2_per_core_over_raw": round(ray2 / 2 / raw, 3)}
        print(json.dumps({name: results[name]}), flush=True)
    ray.shutdown()
    print(json.dumps({"cpu_count": __import__("os").cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    np.random.seed(0)
    main()
