"""A runner: a multi-task vector env stepped by a CPU copy of the policy.

The same class runs in-process (``runners: 0``) and as a Ray actor (``runners: N``), so the
two return identical batches for the same seed and weights.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import torch

from mtrl.agents import build_policy
from mtrl.envs import make

ROLLOUT_KEYS_SN = ("obs", "actions", "logp", "values", "rewards", "terminated", "truncated",
                   "task_ids", "bootstrap", "success")
ROLLOUT_KEYS_N = ("last_obs", "last_task_ids", "last_values")
EPISODE_KEYS = ("r", "l", "success", "task_id")


class Runner:
    """Samples fixed-length rollouts with batched policy inference over its env slots.

    Args:
        env_kwargs: keyword arguments of :func:`mtrl.envs.make` (task set, slots, seed, ...).
        policy_spec: keyword arguments of the policy network.
        seed: seed of the action-sampling generator.
        threads: torch threads for inference (1 on a runner: parallelism comes from runners).
    """

    def __init__(self, env_kwargs: dict[str, Any], policy_spec: dict[str, Any], seed: int, threads: int = 1):
        torch.set_num_threads(threads)
        self.env = make(**env_kwargs)
        slots = env_kwargs.get("slots")
        self.slot_ids = np.asarray(slots if slots is not None else range(self.env.num_envs), np.int64)  # global ids
        self.policy = build_policy(policy_spec)
        self.policy.eval()
        self.gen = torch.Generator().manual_seed(int(seed))
        self.obs, _ = self.env.reset()

    def num_envs(self) -> int:
        return self.env.num_envs

    def set_task_weights(self, weights) -> None:
        self.env.set_task_weights(weights)

    def set_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.policy.load_state_dict(weights)

    def _act(self, obs: np.ndarray, task_ids: np.ndarray):
        a, logp, v = self.policy.act(torch.from_numpy(obs), torch.from_numpy(task_ids), self.gen)
        return a.numpy(), logp.numpy(), v.numpy()

    @torch.no_grad()
    def sample(self, num_steps: int, weights: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Step every slot ``num_steps`` times; arrays are ``[S, N, ...]`` (see :mod:`mtrl.agents.ppo`)."""
        if weights is not None:
            self.policy.load_state_dict(weights)
        env = self.env
        N, S = env.num_envs, num_steps
        obs_buf = np.empty((S, N, env.obs_dim), np.float32)
        act_buf = None
        logp_buf = np.empty((S, N), np.float32)
        val_buf = np.empty((S, N), np.float32)
        rew_buf = np.empty((S, N), np.float32)
        term_buf = np.empty((S, N), bool)
        trunc_buf = np.empty((S, N), bool)
        task_buf = np.empty((S, N), np.int64)
        boot_buf = np.zeros((S, N), np.float32)
        succ_buf = np.empty((S, N), np.float32)
        episodes: dict[str, list] = {k: [] for k in EPISODE_KEYS}
        obs = self.obs
        for t in range(S):
            tids = env.task_ids.copy()
            a, logp, v = self._act(obs, tids)
            if act_buf is None:
                act_buf = np.empty((S, *a.shape), a.dtype)
            obs_buf[t], act_buf[t], logp_buf[t], val_buf[t], task_buf[t] = obs, a, logp, v, tids
            obs, r, term, trunc, info = env.step(a)
            rew_buf[t], term_buf[t], trunc_buf[t], succ_buf[t] = r, term, trunc, info["success"]
            if "_final_obs" in info:
                cut = info["_final_obs"] & trunc & ~term  # time-limit: bootstrap with V(final obs)
                if cut.any():
                    idx = np.flatnonzero(cut)
                    fo = torch.from_numpy(info["final_obs"][idx])
                    boot_buf[t, idx] = self.policy.value(fo, torch.from_numpy(tids[idx])).numpy()
                m = info["_episode"]
                for k in EPISODE_KEYS:
                    episodes[k].append(info["episode"][k][m])
        self.obs = obs
        last_tids = env.task_ids.copy()
        last_v = self.policy.value(torch.from_numpy(obs), torch.from_numpy(last_tids)).numpy()
        out: dict[str, Any] = dict(obs=obs_buf, actions=act_buf, logp=logp_buf, values=val_buf, rewards=rew_buf,
                   terminated=term_buf, truncated=trunc_buf, task_ids=task_buf, bootstrap=boot_buf,
                   success=succ_buf, last_obs=obs.copy(), last_task_ids=last_tids, last_values=last_v)
        out["episodes"] = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in episodes.items()}
        return out

    @torch.no_grad()
    def collect(self, num_steps: int, weights: dict[str, torch.Tensor] | None = None,
                random_actions: bool = False) -> dict[str, Any]:
        """Off-policy transitions of ``num_steps`` vector steps, flattened to ``[S * N, ...]``.

        ``next_obs`` is the true next observation (the final one where an episode ended);
        ``terminated`` excludes time-limit truncation, ``dones`` includes it; ``slots`` gives each
        transition's global env slot (so per-slot sequences can be followed, e.g. for reward
        normalisation). ``random_actions`` samples uniformly
        from the action space (warm-up before learning starts).
        """
        if weights is not None:
            self.policy.load_state_dict(weights)
        env = self.env
        space = env.single_action_space
        obs_l, act_l, rew_l, next_l, term_l, task_l, done_l = [], [], [], [], [], [], []
        episodes: dict[str, list] = {k: [] for k in EPISODE_KEYS}
        obs = self.obs
        for _ in range(num_steps):
            tids = env.task_ids.copy()
            if random_actions:
                u = torch.rand((env.num_envs, *space.shape), generator=self.gen).numpy()
                a = (space.low + u * (space.high - space.low)).astype(np.float32)
            else:
                a = self.policy.act(torch.from_numpy(obs), torch.from_numpy(tids), self.gen)[0].numpy()
            next_obs, r, term, trunc, info = env.step(a)
            real_next = next_obs
            if "_final_obs" in info:
                real_next = next_obs.copy()
                m = info["_final_obs"]
                real_next[m] = info["final_obs"][m]
                for k in EPISODE_KEYS:
                    episodes[k].append(info["episode"][k][info["_episode"]])
            obs_l.append(obs)
            act_l.append(a)
            rew_l.append(r)
            next_l.append(real_next)
            term_l.append(term)
            done_l.append(term | trunc)
            task_l.append(tids)
            obs = next_obs
        self.obs = obs
        return {"obs": np.concatenate(obs_l), "actions": np.concatenate(act_l).astype(np.float32),
                "rewards": np.concatenate(rew_l), "next_obs": np.concatenate(next_l),
                "terminated": np.concatenate(term_l).astype(np.float32), "task_ids": np.concatenate(task_l),
                "dones": np.concatenate(done_l), "slots": np.tile(self.slot_ids, num_steps),
                "episodes": {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in episodes.items()}}

    def get_state(self) -> bytes:
        """Everything needed to continue exactly: envs (pickled), current obs, sampling RNG."""
        return pickle.dumps({"env": self.env, "obs": self.obs, "gen": self.gen.get_state()})

    def set_state(self, blob: bytes) -> None:
        state = pickle.loads(blob)
        self.env.close()
        self.env, self.obs = state["env"], state["obs"]
        self.gen.set_state(state["gen"])

    def close(self) -> None:
        self.env.close()


def merge_transitions(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate runners' off-policy transitions (all arrays are flat ``[S * N, ...]``)."""
    if len(parts) == 1:
        return parts[0]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "episodes"}
    out["episodes"] = {k: np.concatenate([p["episodes"][k] for p in parts]) for k in EPISODE_KEYS}
    return out


def merge_rollouts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate runners' rollouts along the env axis (episodes along their only axis)."""
    if len(parts) == 1:
        return parts[0]
    out: dict[str, Any] = {}
    for k in ROLLOUT_KEYS_SN:
        out[k] = np.concatenate([p[k] for p in parts], axis=1)
    for k in ROLLOUT_KEYS_N:
        out[k] = np.concatenate([p[k] for p in parts], axis=0)
    out["episodes"] = {k: np.concatenate([p["episodes"][k] for p in parts]) for k in EPISODE_KEYS}
    return out
