"""mtrl against its peers on the same tasks, observations, network sizes and budget, one machine, one run.

PPO on MiniGrid MT5 (10 envs: 2 per task, 64x64 tanh MLPs, 128 steps per env per rollout, 4
epochs of 4 minibatches, lr 2.5e-4, gamma 0.99, GAE 0.95, clip 0.2, entropy 0.01):

- mtrl MT-PPO in the modes of ``--mtrl`` (default both): ``in-process`` (``runners=0``) and
  ``async1`` (one Ray runner sampling the next rollout while the learner updates,
  ``ppo.async_rollouts=true``); also ``ray2`` (2 Ray runners) and ``async2``;
- Stable-Baselines3 PPO on :func:`mtrl.interop.sb3_vec_env` (the same envs, one process);
- RLlib PPO (new API stack) on ``mtrl/minigrid/MT5`` (:mod:`mtrl.interop.rllib`), sampling in
  the local env runner (``num_env_runners=0``, 10 envs).

Each library trains for ``--steps`` env steps; its *training* wall-clock (mtrl: the run's
``wall_s``; SB3: ``learn()``; RLlib: the sum of ``time_this_iter_s``) gives env steps/s. Every
trained policy is then evaluated by the same loop: ``--eval-episodes`` deterministic episodes per
task on :class:`mtrl.interop.TaskSetEnv` pinned to that task. (mtrl's SAC against SB3's SAC:
``benchmarks/sac_single_task.py``.)

Every finished run appends a JSON line to ``OUT/results.jsonl`` and is skipped when the script
runs again. Writes ``OUT/table.md`` (ratios to each peer, side by side) and ``OUT/peers.png``.

    .venv/bin/python benchmarks/peers.py                   # 3 seeds, 400k steps: ~15 min on 2 cores
    .venv/bin/python benchmarks/peers.py --seeds 0 --steps 100000
    .venv/bin/python benchmarks/peers.py --plot-only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TASKSET = "minigrid/MT5"
ENVS_PER_TASK = 2
PPO = dict(n_steps=128, epochs=4, minibatches=4, lr=2.5e-4, gamma=0.99, lam=0.95, clip=0.2, ent=0.01, vf=0.5,
           max_grad_norm=0.5, hidden=[64, 64])


def evaluate(act: Callable[[np.ndarray, int], Any], taskset: str, episodes: int, seed: int,
             max_steps: int | None = None) -> dict[str, float]:
    """Deterministic success per task: ``act(obs, task_id) -> action`` on TaskSetEnv pinned to each task."""
    from mtrl.interop import TaskSetEnv

    probe = TaskSetEnv(taskset)
    names = probe.task_names
    probe.close()
    out = {}
    for t, name in enumerate(names):
        w = np.eye(len(names))[t]
        env = TaskSetEnv(taskset, seed=seed + 7 * t, first_task=t, task_weights=w, max_episode_steps=max_steps)
        wins = 0
        obs, _ = env.reset(seed=seed + 7 * t)
        for _ in range(episodes):
            while True:
                obs, _, term, trunc, info = env.step(act(obs, t))
                if term or trunc:
                    wins += info["episode_success"]
                    obs, _ = env.reset()
                    break
        env.close()
        out[name] = wins / episodes
    return out


# --------------------------------------------------------------------------- the libraries
# mode: (label, runners, async rollouts, extra overrides)
MTRL_MODES: dict[str, tuple[str, int, bool, list[str]]] = {
    "in-process": ("mtrl (in-process)", 0, False, []), "ray2": ("mtrl (2 Ray runners)", 2, False, []),
    "async1": ("mtrl (1 Ray runner, async)", 1, True, []), "async2": ("mtrl (2 Ray runners, async)", 2, True, []),
    # RLlib's adaptive KL penalty on top of the clip (its default: coefficient 0.2, target 0.01)
    "async1-kl": ("mtrl (1 Ray runner, async, KL penalty)", 1, True, ["ppo.kl_coeff=0.2", "ppo.kl_target=0.01"]),
    "in-process-kl": ("mtrl (in-process, KL penalty)", 0, False, ["ppo.kl_coeff=0.2", "ppo.kl_target=0.01"]),
    # the decoupled objective (Hilton et al. 2021): the clip and the KL around the pre-update policy
    "async1-dec": ("mtrl (1 Ray runner, async, decoupled)", 1, True, ["ppo.decoupled=true"]),
    "async1-kl-dec": ("mtrl (1 Ray runner, async, KL penalty, decoupled)", 1, True,
                      ["ppo.kl_coeff=0.2", "ppo.kl_target=0.01", "ppo.decoupled=true"]),
}


def sb3_sac_curve(env, taskset: str, sac: dict, seed: int, eval_every: int, episodes: int, *,
                  minutes: float | None = None, steps: int | None = None, tag: str = "sb3") -> list[list]:
    """Train Stable-Baselines3 SAC on ``env`` (an SB3 VecEnv or gymnasium env over ``taskset``)
    until ``minutes`` of training time or ``steps`` env steps, evaluating with :func:`evaluate`
    (deterministic) every ``eval_every`` env steps; evaluation time is not training time.

    ``sac``: hidden, batch, lr, gamma, tau, learning_starts, and optionally buffer (1M),
    train_freq and gradient_steps (1). Returns ``[[env steps, training s, mean success,
    {task: success}], ...]``. One torch thread, as mtrl's learner."""
    import torch
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.callbacks import BaseCallback

    if (minutes is None) == (steps is None):
        raise ValueError("give exactly one of minutes and steps")
    torch.set_num_threads(1)
    model = SB3SAC("MlpPolicy", env, learning_rate=sac["lr"], buffer_size=sac.get("buffer", 1_000_000),
                   learning_starts=sac["learning_starts"], batch_size=sac["batch"], tau=sac["tau"],
                   gamma=sac["gamma"], train_freq=sac.get("train_freq", 1), gradient_steps=sac.get("gradient_steps", 1),
                   seed=seed, device="cpu", policy_kwargs=dict(net_arch=sac["hidden"]))
    curve: list[list] = []
    t0, eval_s, next_eval = time.time(), 0.0, eval_every

    class Eval(BaseCallback):
        def _on_step(self) -> bool:
            nonlocal eval_s, next_eval
            train_s = time.time() - t0 - eval_s
            if self.num_timesteps >= next_eval:  # the env count need not divide eval_every
                next_eval += eval_every
                e0 = time.time()
                s = evaluate(lambda o, t: model.predict(o, deterministic=True)[0], taskset, episodes,
                             seed + 10_000 + self.num_timesteps)
                eval_s += time.time() - e0
                curve.append([self.num_timesteps, round(train_s, 1), float(np.mean(list(s.values()))), s])
                print(f"{tag} s{seed} {self.num_timesteps} env steps, {train_s / 60:.1f} min: "
                      f"{curve[-1][2]:.2f} {s}", flush=True)
            return minutes is None or train_s < minutes * 60

    model.learn(steps if steps is not None else 10**9, callback=Eval())
    env.close()
    return curve


def run_mtrl(seed: int, steps: int, runners: int, out: Path, episodes: int, async_rollouts: bool = False,
             overrides: list[str] | None = None) -> dict:
    import torch

    from mtrl import checkpoint
    from mtrl.runs import load_run

    tag = "_" + "_".join(o.replace("=", "").replace(".", "") for o in overrides) if overrides else ""
    run_dir = out / "runs" / f"mtrl_r{runners}{'a' if async_rollouts else ''}{tag}_s{seed}"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "mtrl.cli", "train", "envs/minigrid-mt5.yaml", "agents/mtppo.yaml",
           f"envs_per_task={ENVS_PER_TASK}", f"total_steps={steps}", f"seed={seed}", f"runners={runners}",
           f"run_dir={run_dir}", "checkpoint_every=0", "log_every=10", f"ppo.async_rollouts={async_rollouts}",
           *(overrides or [])]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    state = checkpoint.load(checkpoint.latest(run_dir))
    policy = load_run(run_dir).agent.policy

    def act(obs, t):
        with torch.no_grad():
            return int(policy.act(torch.as_tensor(obs[None]), torch.tensor([t]), deterministic=True)[0][0])

    return {"steps": int(state["step"]), "train_s": float(state["wall_s"]),
            "success": evaluate(act, TASKSET, episodes, seed + 20_000)}


def run_sb3(seed: int, steps: int, episodes: int) -> dict:
    import torch
    from stable_baselines3 import PPO as SB3PPO

    from mtrl.interop import sb3_vec_env

    torch.set_num_threads(1)
    venv = sb3_vec_env(TASKSET, envs_per_task=ENVS_PER_TASK, seed=seed)
    n = venv.num_envs * PPO["n_steps"]
    model = SB3PPO("MlpPolicy", venv, n_steps=PPO["n_steps"], batch_size=n // PPO["minibatches"], n_epochs=PPO["epochs"],
                   learning_rate=PPO["lr"], gamma=PPO["gamma"], gae_lambda=PPO["lam"], clip_range=PPO["clip"],
                   ent_coef=PPO["ent"], vf_coef=PPO["vf"], max_grad_norm=PPO["max_grad_norm"], seed=seed, device="cpu",
                   policy_kwargs=dict(net_arch=dict(pi=PPO["hidden"], vf=PPO["hidden"]), activation_fn=torch.nn.Tanh))
    t0 = time.time()
    model.learn(steps)
    train_s = time.time() - t0
    venv.close()

    def act(obs, t):
        return int(model.predict(obs, deterministic=True)[0])

    return {"steps": int(model.num_timesteps), "train_s": train_s,
            "success": evaluate(act, TASKSET, episodes, seed + 20_000)}


def run_rllib(seed: int, steps: int, episodes: int) -> dict:
    import ray
    import torch
    from ray.rllib.algorithms.ppo import PPOConfig

    from mtrl.interop import register_rllib_envs

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="error", log_to_driver=False)
    register_rllib_envs()
    n_envs = 5 * ENVS_PER_TASK
    cfg = (PPOConfig().environment(f"mtrl/{TASKSET}", env_config={"seed": seed})
           .env_runners(num_env_runners=0, num_envs_per_env_runner=n_envs, rollout_fragment_length=PPO["n_steps"])
           .training(train_batch_size_per_learner=n_envs * PPO["n_steps"],
                     minibatch_size=n_envs * PPO["n_steps"] // PPO["minibatches"], num_epochs=PPO["epochs"],
                     lr=PPO["lr"], gamma=PPO["gamma"], lambda_=PPO["lam"], clip_param=PPO["clip"],
                     entropy_coeff=PPO["ent"], vf_loss_coeff=PPO["vf"], grad_clip=PPO["max_grad_norm"])
           .rl_module(model_config={"fcnet_hiddens": PPO["hidden"], "fcnet_activation": "tanh",
                                    "vf_share_layers": False})
           .debugging(seed=seed))
    algo = cfg.build_algo()
    train_s, done = 0.0, 0
    while done < steps:
        r = algo.train()
        train_s += r["time_this_iter_s"]
        done = int(r["env_runners"]["num_env_steps_sampled_lifetime"])
    module = algo.get_module()

    def act(obs, t):
        with torch.no_grad():
            logits = module.forward_inference({"obs": torch.as_tensor(obs[None])})["action_dist_inputs"]
        return int(logits.argmax(-1)[0])

    res = {"steps": done, "train_s": train_s, "success": evaluate(act, TASKSET, episodes, seed + 20_000)}
    algo.stop()
    ray.shutdown()
    return res


def run_in_subprocess(lib: str, seed: int, args) -> dict:
    """SB3 and RLlib each in a fresh process (clean threads and Ray state); prints one JSON line."""
    cmd = [sys.executable, __file__, "--_one", lib, "--seeds", str(seed), "--steps", str(args.steps),
           "--eval-episodes", str(args.eval_episodes)]
    r = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- results
def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def summarise(rows: list[dict], out: Path) -> dict:
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["lib"], []).append(r)
    summary = {lib: {"seeds": len(rs), "steps_per_s": float(np.mean([r["steps"] / r["train_s"] for r in rs])),
                     "success": float(np.mean([np.mean(list(r["success"].values())) for r in rs])),
                     "per_task": {k: float(np.mean([r["success"][k] for r in rs])) for k in rs[0]["success"]}}
               for lib, rs in by.items()}
    peers = [k for k in ("Stable-Baselines3", "RLlib") if k in summary]
    tasks = list(next(iter(summary.values()))["per_task"])
    lines = ["| library | seeds | env steps/s (training) | " + "".join(f"this / {k} | " for k in peers)
             + "final deterministic success | " + " | ".join(tasks) + " |",
             "|---|---|---|" + "---|" * (len(peers) + 1 + len(tasks))]
    for lib, s in summary.items():
        s["ratio"] = {k: s["steps_per_s"] / summary[k]["steps_per_s"] for k in peers}
        lines.append(f"| {lib} | {s['seeds']} | {s['steps_per_s']:,.0f} | "
                     + "".join(f"{s['ratio'][k]:.2f}x | " for k in peers) + f"{s['success']:.2f} | "
                     + " | ".join(f"{v:.2f}" for v in s["per_task"].values()) + " |")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    (out / "table.md").write_text("\n".join(lines) + f"\n\nMachine: {machine}\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        libs = list(summary)
        axes[0].bar(libs, [summary[k]["steps_per_s"] for k in libs])
        axes[0].set_ylabel("env steps/s (training)")
        axes[1].bar(libs, [summary[k]["success"] for k in libs])
        axes[1].set_ylabel("final deterministic success")
        axes[1].set_ylim(0, 1.05)
        for ax in axes:
            ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        fig.suptitle(f"PPO on {TASKSET}, {summary[libs[0]]['seeds']} seed(s)")
        fig.tight_layout()
        fig.savefig(out / "peers.png", dpi=110)
    except ImportError:
        pass
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=400_000)
    p.add_argument("--libs", nargs="+", default=["mtrl", "sb3", "rllib"], choices=["mtrl", "sb3", "rllib"])
    p.add_argument("--mtrl", nargs="+", default=["in-process", "async1"], choices=list(MTRL_MODES))
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/peers"))
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._one:  # child process: one SB3 or RLlib run
        fn = {"sb3": run_sb3, "rllib": run_rllib}[args._one]
        print(json.dumps(fn(args.seeds[0], args.steps, args.eval_episodes)))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    if not args.plot_only:
        for seed in args.seeds:
            jobs = [(*MTRL_MODES[m], "mtrl") for m in args.mtrl if "mtrl" in args.libs]
            jobs += [({"sb3": "Stable-Baselines3", "rllib": "RLlib"}[lib], 0, False, [], lib) for lib in ("sb3", "rllib")
                     if lib in args.libs]
            for label, runners, async_rollouts, overrides, lib in jobs:
                if any(r["lib"] == label and r["seed"] == seed and r["budget"] == args.steps for r in load(results)):
                    continue
                print(f"== {label} seed {seed}", flush=True)
                res = (run_mtrl(seed, args.steps, runners, out, args.eval_episodes, async_rollouts, overrides)
                       if lib == "mtrl"
                       else run_in_subprocess(lib, seed, args))
                row = {"lib": label, "seed": seed, "budget": args.steps, **res}
                print(json.dumps(row), flush=True)
                with open(results, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print(json.dumps(summarise([r for r in load(results) if r["budget"] == args.steps], out), indent=2))


if __name__ == "__main__":
    main()
