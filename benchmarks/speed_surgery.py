"""Gradient-surgery speed at T=10 with the MT10 network (400x3 MLPs, 128 samples per task).

In one run, interleaved so machine noise hits all alike, it times:

1. per-task gradients of the MT10 critic loss (``[T, P]``, P ~ 0.65M):
   ``mean_backward`` (one backward of the mean loss, no per-task gradients: the floor),
   ``vmap`` (mtrl.surgery.jacobian: one batched backward over the task axis),
   ``naive_loop`` (T ``autograd.grad(retain_graph=True)`` calls, what most repositories do);
2. a whole MT-SAC update (critic + actor + temperatures) with ``surgery: mean`` (plain
   backward) vs every other method (vmapped per-task gradients + the aggregator), and PCGrad
   computed from the naive loop for comparison.

Prints JSON with milliseconds and ratios (``x_mean``: over the mean update; ``naive_over_vmap``).
Usage: ``python benchmarks/speed_surgery.py [--reps 10] [--threads 2] [--methods pcgrad cagrad ...]``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import gymnasium as gym
import numpy as np
import torch

from mtrl.agents import MTSAC, SACConfig
from mtrl.surgery import names
from mtrl.surgery.jacobian import flatten_grads, naive_per_task_grads, per_task_grads

warnings.filterwarnings("ignore")
T, PER, OBS, ACT = 10, 128, 39 + 10, 4


def batch(seed: int = 0) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    n = T * PER
    return {"obs": r.normal(size=(n, OBS)).astype(np.float32), "actions": r.uniform(-1, 1, (n, ACT)).astype(np.float32),
            "rewards": r.uniform(0, 10, n).astype(np.float32), "next_obs": r.normal(size=(n, OBS)).astype(np.float32),
            "terminated": np.zeros(n, np.float32), "task_ids": np.repeat(np.arange(T), PER)}


def timeit(fn, reps: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def jacobian_timings(reps: int) -> dict[str, float]:
    agent = MTSAC(SACConfig(), OBS, T, gym.spaces.Box(-1, 1, (ACT,), np.float32))
    critic = agent.critic
    b = {k: torch.as_tensor(v) for k, v in batch().items()}
    y = b["rewards"]
    names_ = [k for k, _ in critic.named_parameters()]

    def losses():
        q = critic(b["obs"], b["actions"], b["task_ids"])
        return (0.5 * (q - y).pow(2).sum(0)).view(T, PER).mean(1)

    def mean_backward():
        critic.zero_grad()
        losses().mean().backward()

    def task_loss(call, tb):
        return (0.5 * (call(tb["obs"], tb["act"], tb["tids"]) - tb["y"]).pow(2).sum(0)).mean(), {}

    tb = {"obs": b["obs"].view(T, PER, -1), "act": b["actions"].view(T, PER, -1),
          "tids": b["task_ids"].view(T, PER), "y": y.view(T, PER)}

    def vmap():
        flatten_grads(per_task_grads(critic, names_, task_loss, tb)[0], names_)

    def naive():
        naive_per_task_grads(losses(), list(critic.parameters()))

    # same result check (the benchmark is meaningless otherwise)
    a = flatten_grads(per_task_grads(critic, names_, task_loss, tb)[0], names_)
    c = naive_per_task_grads(losses(), list(critic.parameters()))
    assert torch.allclose(a, c, rtol=1e-4, atol=1e-6), (a - c).abs().max()
    return {"mean_backward": timeit(mean_backward, reps), "vmap": timeit(vmap, reps),
            "naive_loop": timeit(naive, reps)}


def update_timings(methods: list[str], reps: int) -> dict[str, float]:
    out = {}
    b = batch()
    for m in ["mean", *methods]:
        kw = {"c": 0.9} if m == "cagrad" else {}
        agent = MTSAC(SACConfig(), OBS, T, gym.spaces.Box(-1, 1, (ACT,), np.float32), surgery=m, surgery_args=kw)
        out[m] = timeit(lambda agent=agent: agent.update(b), reps)
    # PCGrad fed by T backward passes (jacobian="loop") instead of the vmapped Jacobian
    agent = MTSAC(SACConfig(), OBS, T, gym.spaces.Box(-1, 1, (ACT,), np.float32), surgery="pcgrad")
    agent.critic_surgery.jacobian = agent.actor_surgery.jacobian = "loop"
    out["pcgrad_naive_loop"] = timeit(lambda: agent.update(b), reps)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=[m for m in names() if m not in ("mean", "sum")])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    jac = jacobian_timings(args.reps)
    upd = update_timings(args.methods, args.reps)
    res = {
        "T": T, "per_task": PER, "network": "400x3 (MT10 critic + actor)", "threads": args.threads,
        "jacobian_ms": {k: round(v * 1e3, 1) for k, v in jac.items()},
        "jacobian_ratio_over_mean_backward": {k: round(v / jac["mean_backward"], 2) for k, v in jac.items()},
        "naive_loop_over_vmap": round(jac["naive_loop"] / jac["vmap"], 2),
        "update_ms": {k: round(v * 1e3, 1) for k, v in upd.items()},
        "update_x_mean": {k: round(v / upd["mean"], 2) for k, v in upd.items()},
        "pcgrad_update_speedup_vs_naive_loop": round(upd["pcgrad_naive_loop"] / upd["pcgrad"], 2),
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
