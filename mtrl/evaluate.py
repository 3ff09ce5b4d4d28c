"""Deterministic evaluation: E episodes per task, success = success at any step of an episode.

This is the Meta-World convention (an episode counts as solved if ``info["success"]`` was 1 at
any step), also used for MiniGrid (there success ends the episode).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mtrl.envs import MultiTaskVectorEnv


@torch.no_grad()
def evaluate(policy: torch.nn.Module, env: MultiTaskVectorEnv, episodes: int, seed: int | None = None) -> dict[str, Any]:
    """Run ``episodes`` deterministic episodes in every slot of ``env`` (one slot per task).

    Returns per-task ``success`` and ``return`` means (arrays ``[T]``) and the raw episodes.
    Slots that finish early keep stepping (their extra episodes are ignored) so the batch
    stays whole.
    """
    if env.task_weights is not None:
        raise ValueError("evaluate() needs fixed slot tasks (task weights None)")
    obs, _ = env.reset(seed=seed)
    T = env.num_tasks
    done_eps: list[list[tuple[float, float, int]]] = [[] for _ in range(env.num_envs)]
    while min(len(d) for d in done_eps) < episodes:
        tids = env.task_ids.copy()
        a = policy.act(torch.from_numpy(obs), torch.from_numpy(tids), deterministic=True)[0].numpy()
        obs, _, _, _, info = env.step(a)
        if "_episode" in info:
            for i in np.flatnonzero(info["_episode"]):
                if len(done_eps[i]) < episodes:
                    ep = info["episode"]
                    done_eps[i].append((float(ep["success"][i]), float(ep["r"][i]), int(ep["l"][i])))
    per_task: list[list[tuple[float, float, int]]] = [[] for _ in range(T)]
    for i, eps in enumerate(done_eps):
        per_task[int(env.task_ids[i])] += eps
    success = np.array([np.mean([e[0] for e in eps]) if eps else np.nan for eps in per_task])
    returns = np.array([np.mean([e[1] for e in eps]) if eps else np.nan for eps in per_task])
    return {"success": success, "return": returns, "episodes": per_task, "mean_success": float(np.nanmean(success))}
