"""SAC update speed: mtrl's MT-SAC update vs Stable-Baselines3 SAC's, same network and batch.

Both sides time whole gradient steps *including* drawing the batch from their replay buffer
(SB3 samples inside ``SAC.train``), on buffers pre-filled with the same random data, with the
same torch thread count, in one run:

- ``sb3_T1``: SB3 SAC, 400x3 MLPs, batch 128, ent_coef auto (one temperature);
- ``mtrl_T1``: MT-SAC with one task (obs 39 + one-hot), batch 128;
- ``mtrl_T10``: MT-SAC with ten tasks (MT10 layout, obs 39 + 10), batch 1280, ten temperatures.

Prints JSON with ms per update, microseconds per sample and the ratios
``sb3_T1 / mtrl_T1`` (>1: ours faster) and per-sample ``sb3_T1 / mtrl_T10``.
Usage: ``python benchmarks/speed_sac.py [--updates 200] [--threads 1]``.
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
OBS = 39
ACT = 4


class _Dummy(gym.Env):
    """Spaces only: SB3 needs an env to build its policy."""

    def __init__(self, dim: int):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (ACT,), np.float32)

    def reset(self, *, seed=None, options=None):
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        return np.zeros(self.observation_space.shape, np.float32), 0.0, False, False, {}


def time_sb3(batch: int, updates: int, fill: int) -> float:
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import configure

    model = SAC("MlpPolicy", _Dummy(OBS + 1), batch_size=batch, buffer_size=fill, learning_starts=0,
                policy_kwargs=dict(net_arch=[400, 400, 400]), device="cpu", seed=0)
    model.set_logger(configure(None, []))
    rb = model.replay_buffer
    r = np.random.default_rng(0)
    rb.observations[:] = r.normal(size=rb.observations.shape)
    rb.next_observations[:] = r.normal(size=rb.next_observations.shape)
    rb.actions[:] = r.uniform(-1, 1, rb.actions.shape)
    rb.rewards[:] = r.normal(size=rb.rewards.shape)
    rb.full = True
    model.train(gradient_steps=5, batch_size=batch)  # warm-up
    t0 = time.perf_counter()
    model.train(gradient_steps=updates, batch_size=batch)
    return (time.perf_counter() - t0) / updates


def time_mtrl(T: int, per_task: int, updates: int, fill: int) -> float:
    from mtrl.agents import MTSAC, SACConfig
    from mtrl.buffers import PerTaskReplay

    agent = MTSAC(SACConfig(batch_per_task=per_task), OBS + T, T, gym.spaces.Box(-1, 1, (ACT,), np.float32))
    buf = PerTaskReplay(T, fill // T, OBS + T, ACT)
    r = np.random.default_rng(0)
    n = fill // T * T
    buf.add(np.repeat(np.arange(T), fill // T), r.normal(size=(n, OBS + T)), r.uniform(-1, 1, (n, ACT)),
            r.normal(size=n), r.normal(size=(n, OBS + T)), np.zeros(n))
    rng = np.random.default_rng(0)
    for _ in range(5):
        agent.update(buf.sample(per_task, rng))
    t0 = time.perf_counter()
    for _ in range(updates):
        agent.update(buf.sample(per_task, rng))
    return (time.perf_counter() - t0) / updates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fill", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=2, help="alternate the three timings this many times")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res: dict[str, list[float]] = {"sb3_T1": [], "mtrl_T1": [], "mtrl_T10": []}
    for _ in range(args.repeats):  # interleaved so machine noise hits all three alike
        res["sb3_T1"].append(time_sb3(128, args.updates, args.fill))
        res["mtrl_T1"].append(time_mtrl(1, 128, args.updates, args.fill))
        res["mtrl_T10"].append(time_mtrl(10, 128, args.updates, args.fill))
    best = {k: min(v) for k, v in res.items()}
    out = {
        "threads": args.threads, "network": "400x3", "updates": args.updates,
        "ms_per_update": {k: round(v * 1e3, 2) for k, v in best.items()},
        "us_per_sample": {"sb3_T1": round(best["sb3_T1"] / 128 * 1e6, 2), "mtrl_T1": round(best["mtrl_T1"] / 128 * 1e6, 2),
                          "mtrl_T10": round(best["mtrl_T10"] / 1280 * 1e6, 2)},
        "speedup_T1_sb3_over_mtrl": round(best["sb3_T1"] / best["mtrl_T1"], 3),
        "per_sample_speedup_sb3_T1_over_mtrl_T10": round((best["sb3_T1"] / 128) / (best["mtrl_T10"] / 1280), 3),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
