"""Where an in-process runner's time goes per env step: the env itself vs mtrl's own work.

Profiles ``Runner.sample`` (the MT-PPO rollout loop: batched policy inference, the multi-task
vector env, the rollout buffers) with ``cProfile`` and splits its time into

- ``env``: the task envs' own ``step``/``reset`` below mtrl's wrappers (for MiniGrid: the
  simulator and its egocentric observation, i.e. what ``speed_runners.py``'s *raw* loop steps);
- ``obs_encoding``: mtrl's observation wrapper (MiniGrid's one-hot layout, success flag);
- ``policy``: batched inference (``act`` and time-limit bootstrap values);
- ``runner_and_vector_env``: the rest (per-slot bookkeeping, padding and the one-hot task id,
  episode statistics, rollout buffers).

Shares are of the profiled ``sample`` call, with cProfile's own overhead spread over all of them,
so read them as proportions, not as the unprofiled cost. Prints JSON (and writes it to
``--out``); the share ``env`` is the ceiling of ``in-process runner / raw`` in ``speed_runners.py``.

    .venv/bin/python benchmarks/profile_runner.py [--set minigrid|mt10] [--steps 256]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent
SETS = {"minigrid": ("minigrid/MT5", 8), "mt10": ("metaworld/MT10", 1)}


def _cum(stats: pstats.Stats, match) -> float:
    """Cumulative seconds of the functions ``match(file, line, name)`` selects (not nested in each other)."""
    return sum(v[3] for k, v in stats.stats.items() if match(*k))  # type: ignore[attr-defined]


def _below(stats: pstats.Stats, match) -> float:
    """Cumulative seconds spent in what the selected functions call outside their own file: for mtrl's
    task wrappers, the wrapped env (``observation``, the encoding, is in the wrapper's file)."""
    stats.calc_callees()
    total = 0.0
    for k, callees in stats.all_callees.items():  # type: ignore[attr-defined]
        if match(*k):
            total += sum(v[3] for c, v in callees.items() if c[0] != k[0] and not c[0].startswith("~"))
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", choices=list(SETS), default="minigrid")
    p.add_argument("--steps", type=int, default=256, help="vector steps profiled (after a 128-step warm-up)")
    p.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/profile_runner_<set>.json)")
    args = p.parse_args()
    torch.set_num_threads(1)
    from mtrl.agents import MTPPO, PPOConfig
    from mtrl.envs import make
    from mtrl.runners.runner import Runner

    taskset, ept = SETS[args.set]
    kw = dict(taskset=taskset, envs_per_task=ept, seed=0)
    probe = make(**kw)
    agent = MTPPO(PPOConfig(), probe.obs_dim, probe.num_tasks, probe.single_action_space)
    runner = Runner(kw, agent.policy_spec, seed=0)
    runner.sample(128)
    prof = cProfile.Profile()
    prof.enable()
    runner.sample(args.steps)
    prof.disable()
    st = pstats.Stats(prof)
    total = _cum(st, lambda f, _l, n: n == "sample" and f.endswith("runners/runner.py"))
    in_tasks = lambda f, _l, n: n in ("step", "reset") and f.endswith("mtrl/envs/tasks.py")  # noqa: E731
    wrapped = _cum(st, in_tasks)  # mtrl's task wrappers: the env below them + their own encoding
    env = _below(st, in_tasks)
    policy = _cum(st, lambda f, _l, n: n in ("act", "value") and f.endswith("mtrl/agents/networks.py"))
    n_steps = args.steps * probe.num_envs
    out = {"set": taskset, "envs": probe.num_envs, "env_steps": n_steps,
           "profiled_us_per_env_step": round(total / n_steps * 1e6, 1),
           "share": {"env": round(env / total, 3), "obs_encoding": round((wrapped - env) / total, 3),
                     "policy": round(policy / total, 3),
                     "runner_and_vector_env": round((total - wrapped - policy) / total, 3)},
           "torch": torch.__version__}
    path = Path(args.out or ROOT / f"benchmarks/results/profile_runner_{args.set}.json")
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
