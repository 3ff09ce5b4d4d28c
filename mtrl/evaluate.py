"""Deterministic evaluation: E episodes per task, success = success at any step of an episode.

This is the Meta-World convention (an episode counts as solved if ``info["success"]`` was 1 at
any step), also used for MiniGrid (there success ends the episode).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from mtrl.envs import MultiTaskVectorEnv


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one torch intra-op thread, then restore the previous count.

    Evaluation calls the policy on at most a few dozen observations per step, where more threads
    only add synchronisation; on a busy machine (evaluating while training runs) two OpenMP
    threads made each call of a 64x64 MiniGrid policy ~400x slower (0.4 ms -> 160 ms, measured
    with the ladder3 policy at T=10), turning a one-minute ``mtrl eval`` into ten."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


@torch.no_grad()
def evaluate(policy: torch.nn.Module, env: MultiTaskVectorEnv, episodes: int, seed: int | None = None,
             progress: bool = False, label: str = "eval", deterministic: bool = True) -> dict[str, Any]:
    """Run ``episodes`` episodes in every slot of ``env`` (one slot per task), with the policy's
    deterministic actions or (``deterministic=False``) sampled ones, drawn from a generator
    seeded by ``seed`` so the evaluation is repeatable.

    Returns per-task ``success`` and ``return`` means (arrays ``[T]``) and the raw episodes
    (``[(success, return, length), ...]`` per task). ``progress`` shows a tqdm bar.
    Slots that finish early keep stepping (their extra episodes are ignored) so the batch
    stays whole.
    """
    if env.task_weights is not None:
        raise ValueError("evaluate() needs fixed slot tasks (task weights None)")
    obs, _ = env.reset(seed=seed)
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    T = env.num_tasks
    done_eps: list[list[tuple[float, float, int]]] = [[] for _ in range(env.num_envs)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=episodes * env.num_envs, desc=f"{label} episodes", unit="ep", leave=False)
    with one_thread():  # small batches: extra intra-op threads only slow the policy calls
        while min(len(d) for d in done_eps) < episodes:
            tids = env.task_ids.copy()
            a = policy.act(torch.from_numpy(obs), torch.from_numpy(tids), gen, deterministic=deterministic)[0].numpy()
            obs, _, _, _, info = env.step(a)
            if "_episode" in info:
                for i in np.flatnonzero(info["_episode"]):
                    if len(done_eps[i]) < episodes:
                        ep = info["episode"]
                        done_eps[i].append((float(ep["success"][i]), float(ep["r"][i]), int(ep["l"][i])))
                        if bar is not None:
                            bar.update(1)
    if bar is not None:
        bar.close()
    per_task: list[list[tuple[float, float, int]]] = [[] for _ in range(T)]
    for i, eps in enumerate(done_eps):
        per_task[int(env.task_ids[i])] += eps
    success = np.array([np.mean([e[0] for e in eps]) if eps else np.nan for eps in per_task])
    returns = np.array([np.mean([e[1] for e in eps]) if eps else np.nan for eps in per_task])
    return {"success": success, "return": returns, "episodes": per_task, "mean_success": float(np.nanmean(success))}


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (well-behaved at 0 and 1, unlike mean +- 1.96 se)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(x: np.ndarray, z: float = 1.96) -> tuple[float | None, float | None]:
    """Normal-approximation 95% interval of a mean; ``(None, None)`` (JSON null, printed as
    "(1 episode)") from fewer than two values, where no interval exists."""
    if len(x) < 2:
        return (None, None)
    se = float(np.std(x, ddof=1) / np.sqrt(len(x)))
    return (float(np.mean(x) - z * se), float(np.mean(x) + z * se))


def evaluate_run(run_dir, checkpoint_path=None, episodes: int = 10, tasks=None, seed: int | None = None,
                 progress: bool = True, deterministic: bool = True, trusted: bool = False) -> dict[str, Any]:
    """Evaluate a run's checkpoint: ``episodes`` deterministic episodes per task on fresh goals.

    Returns the ``eval.json`` content: per task success rate and mean return with 95%
    intervals, for the training tasks and, for a policy trained without task one-hots on a set
    with held-out tasks (ML10/ML45), for the test tasks too.
    """
    from mtrl.agents.device import cpu_policy
    from mtrl.envs import make
    from mtrl.errors import MtrlError, choices, did_you_mean
    from mtrl.runs import env_kwargs, load_run

    run = load_run(run_dir, checkpoint_path, trusted)
    cfg, agent, probe, path = run.cfg, run.agent, run.probe, run.checkpoint
    seed = cfg.seed + 20_000 if seed is None else seed
    splits = [("train", probe.task_names)]
    if not cfg.one_hot and probe.taskset.test and cfg.split == "train":
        splits.append(("test", [t.name for t in probe.taskset.test]))
    if tasks:
        every = [n for _, names in splits for n in names]
        bad = [t for t in tasks if t not in every]
        if bad:
            raise MtrlError(f"task {bad[0]!r} is not in the run's task set; {did_you_mean(bad[0], every)}valid tasks: {choices(every)}")
    result: dict[str, Any] = {"run_dir": str(run.run_dir), "checkpoint": str(path), "step": run.step,
                              "episodes_per_task": episodes, "seed": seed, "deterministic": deterministic,
                              "success_definition": "success at any step of the episode (Meta-World convention)",
                              "tasks": {}}
    for split, names in splits:
        chosen = [i for i, n in enumerate(names) if not tasks or n in tasks]
        if not chosen:
            continue
        kw = {**env_kwargs(cfg), "envs_per_task": 1, "seed": seed, "split": split}
        env = make(**kw, slots=chosen)
        res = evaluate(cpu_policy(agent), env, episodes, seed=seed, progress=progress, label=split,
                       deterministic=deterministic)
        env.close()
        for i in chosen:
            eps = res["episodes"][i]
            succ = np.array([e[0] for e in eps])
            rets = np.array([e[1] for e in eps])
            lo, hi = wilson_interval(int(succ.sum()), len(succ))
            rlo, rhi = mean_interval(rets)
            result["tasks"][names[i]] = {
                "split": split, "episodes": len(eps), "success": float(succ.mean()), "success_ci95": [lo, hi],
                "return": float(rets.mean()), "return_ci95": [rlo, rhi],
                "episode_length": float(np.mean([e[2] for e in eps]))}
    for split, _ in splits:
        vals = [v["success"] for v in result["tasks"].values() if v["split"] == split]
        if vals:
            result[f"mean_success_{split}"] = float(np.mean(vals))
    return result


def format_table(result: dict[str, Any]) -> str:
    """The console table of :func:`evaluate_run`'s result."""
    kind = "deterministic" if result.get("deterministic", True) else "stochastic"
    lines = [f"step {result['step']:,}: {result['episodes_per_task']} {kind} episodes per task; "
             f"success = {result['success_definition']}",
             f"{'task':32s} {'split':5s} {'success':>8s} {'95% CI':>15s} {'return':>10s} {'95% CI':>21s}"]
    for name, v in result["tasks"].items():
        lo, hi = v["success_ci95"]
        rlo, rhi = v["return_ci95"]
        rci = f"[{rlo:9.2f}, {rhi:9.2f}]" if rlo is not None else f"{'(1 episode)':>21s}"
        lines.append(f"{name:32s} {v['split']:5s} {v['success']:8.2f} [{lo:5.2f}, {hi:5.2f}] "
                     f"{v['return']:10.2f} {rci}")
    for key in ("mean_success_train", "mean_success_test"):
        if key in result:
            lines.append(f"{key.replace('_', ' ')}: {result[key]:.3f}")
    return "\n".join(lines)
