"""Expert demonstrations for a task set, stored as a Minari dataset (``mtrl demos``).

Each episode is rolled out by the task's scripted expert (:mod:`mtrl.imitation.experts`) in the
env mtrl trains on (same wrappers, episode limit and observation encoding). Observations are
the task's flat observation zero-padded to the set's width, *without* the one-hot task id: the
id is a label, kept apart so that ``--no-labels`` can remove it. With labels, an episode's task
is in its per-step ``infos["task_id"]`` (length T+1, so ``dataset.filter_episodes`` works) and in
the dataset metadata (``episode_task_ids``); without labels neither exists and the episodes are
shuffled, so not even their order gives the task away.

Dataset metadata (``dataset.storage.metadata``): ``mtrl_taskset``, ``task_names``, ``labels``,
``expert_success`` (per task, every episode the expert played), ``episodes_per_task``,
``only_successful`` and ``attempts_per_task`` (with ``--only-successful`` failed episodes are
rolled out but not stored), ``obs_dim``,
``max_episode_steps``, ``seed``. Minari's own fields hold the spaces and counts.

The dataset folder is ``OUT/<dataset id>`` (Minari's layout under ``MINARI_DATASETS_PATH=OUT``),
e.g. ``demos/mtrl/minigrid-MT5/expert-v0``; ``mtrl train ... demos=PATH`` takes that folder.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from mtrl.errors import MtrlError


def dataset_id(taskset: str, labels: bool) -> str:
    slug = taskset.replace("/", "-").replace(":", "-")
    return f"mtrl/{slug}/expert{'' if labels else '-unlabelled'}-v0"


@contextmanager
def _datasets_root(root: Path):
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def rollout(taskset: str, episodes: int, seed: int = 0, tasks: list[str] | None = None,
            max_episode_steps: int | None = None, progress: bool = False,
            only_successful: bool = False) -> tuple[list[dict], Any]:
    """``episodes`` expert episodes per task: ``[{task_id, obs [L+1, D], actions [L, ...], rewards,
    terminations, truncations, success [L+1]}, ...]`` and the task set. With ``only_successful``,
    failed episodes are dropped and more are rolled out (at most ``3 x episodes`` per task); every
    attempt is still returned with ``kept`` False/True so the expert's true success rate is known."""
    from mtrl.envs import get
    from mtrl.envs.tasks import build_task_env, raw_obs_dim
    from mtrl.imitation.experts import expert_for

    ts = get("custom" if tasks else taskset, tasks)
    specs = ts.tasks("train")
    width = max(raw_obs_dim(t) for t in specs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=episodes * len(specs), desc="demos", unit="ep", file=sys.stderr)
    out: list[dict] = []
    for k, spec in enumerate(specs):
        env = build_task_env(spec, seed, max_episode_steps)
        expert = expert_for(spec, env, seed * 1000 + k)
        kept, e = 0, 0
        while kept < episodes and e < (3 * episodes if only_successful else episodes):
            obs, info = env.reset(seed=seed * 100_003 + k * 10_007 + e)
            e += 1
            expert.reset()
            rows, acts, rews, terms, truncs, succ = [obs], [], [], [], [], [float(info.get("success", 0.0))]
            done = False
            while not done:
                a = expert(obs)
                obs, r, term, trunc, info = env.step(a)
                rows.append(obs)
                acts.append(a)
                rews.append(float(r))
                terms.append(bool(term))
                truncs.append(bool(trunc))
                succ.append(float(info["success"]))
                done = term or trunc
            o = np.zeros((len(rows), width), np.float32)
            for i, row in enumerate(rows):
                o[i, :row.shape[0]] = row
            ok = not only_successful or max(succ) > 0
            kept += ok
            out.append({"task_id": k, "obs": o, "actions": np.asarray(acts), "rewards": np.asarray(rews),
                        "terminations": np.asarray(terms), "truncations": np.asarray(truncs),
                        "success": np.asarray(succ, np.float32), "kept": ok})
            if bar is not None and ok:
                bar.update(1)
        env.close()
    if bar is not None:
        bar.close()
    return out, ts


def make_demos(taskset: str, episodes: int, out: str | Path = "demos", labels: bool = True, seed: int = 0,
               tasks: list[str] | None = None, max_episode_steps: int | None = None, overwrite: bool = False,
               progress: bool = False, only_successful: bool = False) -> dict[str, Any]:
    """Roll out the experts and write the Minari dataset; returns a summary with its path and the
    experts' success per task (over every episode rolled out, kept or not). An existing dataset
    is refused unless ``overwrite``; ``only_successful`` keeps successful episodes only."""
    import minari
    from minari.data_collector import EpisodeBuffer

    if episodes <= 0:
        raise MtrlError(f"--episodes must be positive, got {episodes}")
    root = Path(out).resolve()
    did = dataset_id("custom" if tasks else taskset, labels)
    path = root / did
    if path.exists():
        if not overwrite:
            raise MtrlError(f"{path} already holds a dataset; pass --overwrite to replace it or --out another folder")
        shutil.rmtree(path)
    attempts, ts = rollout(taskset, episodes, seed, tasks, max_episode_steps, progress, only_successful)
    names = [t.name for t in ts.tasks("train")]
    success = {n: float(np.mean([e["success"].max() for e in attempts if e["task_id"] == k]))
               for k, n in enumerate(names)}
    eps = [e for e in attempts if e["kept"]]
    short = [n for k, n in enumerate(names) if sum(e["task_id"] == k for e in eps) < episodes]
    if short:
        raise MtrlError(f"the expert succeeded in fewer than {episodes} of {3 * episodes} episodes on {short}; "
                        "lower --episodes or drop --only-successful")
    order = np.arange(len(eps))
    if not labels:
        np.random.default_rng(seed).shuffle(order)  # task-major order would give the labels away
    buffers = []
    for i in order:
        e = eps[int(i)]
        infos: dict[str, Any] = {"success": e["success"].tolist()}
        if labels:
            infos["task_id"] = [e["task_id"]] * len(e["obs"])
        buffers.append(EpisodeBuffer(observations=e["obs"], actions=e["actions"], rewards=e["rewards"].tolist(),
                                     terminations=e["terminations"].tolist(), truncations=e["truncations"].tolist(),
                                     infos=infos))
    from mtrl.envs.tasks import action_space_of

    obs_space = gym.spaces.Box(-np.inf, np.inf, (eps[0]["obs"].shape[1],), np.float32)
    act_space = action_space_of(ts.tasks("train")[0])
    root.mkdir(parents=True, exist_ok=True)
    with _datasets_root(root), warnings.catch_warnings():
        # Minari warns that no env spec, eval env or author e-mail is given: by design, our task
        # envs are built by mtrl (Meta-World's spec cannot even be serialised), not gym.make ids.
        warnings.filterwarnings("ignore", category=UserWarning, module="minari")
        try:
            ds = minari.create_dataset_from_buffers(
                did, buffers, env=None, observation_space=obs_space, action_space=act_space,
                algorithm_name="scripted-expert", author={"mtrl"}, code_permalink="https://github.com/mtrl",
                description=f"mtrl expert demonstrations for {ts.name} ({'with' if labels else 'without'} task labels)",
                data_format="hdf5", jpeg_encoding=False)
        except Exception:
            shutil.rmtree(path, ignore_errors=True)  # Minari leaves a half-made folder behind on errors
            raise
        meta: dict[str, Any] = {"mtrl_taskset": ts.name, "task_names": names, "labels": labels,
                                "expert_success": success, "episodes_per_task": episodes,
                                "only_successful": only_successful,
                                "attempts_per_task": {n: sum(e["task_id"] == k for e in attempts)
                                                      for k, n in enumerate(names)},
                                "obs_dim": int(obs_space.shape[0]), "max_episode_steps": max_episode_steps,
                                "seed": seed}
        if labels:
            meta["episode_task_ids"] = [int(eps[int(i)]["task_id"]) for i in order]
        ds.storage.update_metadata(meta)
    return {"path": str(path), "dataset_id": did, "episodes": len(eps), "steps": int(ds.total_steps),
            "expert_success": success, "labels": labels}


@dataclass
class Demos:
    """A demonstration dataset in memory: transitions and, with labels, their task ids."""

    path: Path
    metadata: dict[str, Any]
    obs: np.ndarray  # [N, D] (no one-hot)
    actions: np.ndarray  # [N, ...]
    next_obs: np.ndarray  # [N, D]
    terminated: np.ndarray  # [N]
    truncated: np.ndarray  # [N] (time limit)
    episode: np.ndarray  # [N] episode index
    task_ids: np.ndarray | None  # [N] or None (unlabelled)
    observation_space: gym.Space
    action_space: gym.Space

    @property
    def labels(self) -> bool:
        return self.task_ids is not None


def load_demos(path: str | Path) -> Demos:
    """Read a dataset written by :func:`make_demos` (its folder, or its ``data`` subfolder)."""
    import minari

    p = Path(path)
    data = p / "data" if (p / "data").is_dir() else p
    if not (data / "metadata.json").is_file():
        raise MtrlError(f"{path} is not a demonstration dataset (no data/metadata.json); "
                        "make one with `mtrl demos TASKSET --episodes N`")
    try:
        ds = minari.MinariDataset(str(data))
        meta = dict(ds.storage.metadata)
    except Exception as exc:  # noqa: BLE001 - a damaged folder: JSON, HDF5 or Minari errors
        raise MtrlError(f"cannot read demonstrations {path}: {type(exc).__name__}: {exc}") from None
    obs, acts, nxt, term, trunc, epi, tids = [], [], [], [], [], [], []
    for k, ep in enumerate(ds.iterate_episodes()):
        o = np.asarray(ep.observations, np.float32)
        obs.append(o[:-1])
        nxt.append(o[1:])
        acts.append(np.asarray(ep.actions))
        term.append(np.asarray(ep.terminations, bool))
        trunc.append(np.asarray(ep.truncations, bool))
        epi.append(np.full(len(o) - 1, k))
        if "task_id" in ep.infos:
            tids.append(np.asarray(ep.infos["task_id"])[:-1])
    return Demos(path=p, metadata=meta, obs=np.concatenate(obs), actions=np.concatenate(acts),
                 next_obs=np.concatenate(nxt), terminated=np.concatenate(term),
                 truncated=np.concatenate(trunc), episode=np.concatenate(epi),
                 task_ids=np.concatenate(tids).astype(np.int64) if tids else None,
                 observation_space=ds.spec.observation_space, action_space=ds.spec.action_space)


def check_matches(demos: Demos, task_names: list[str], raw_dim: int, action_space: gym.Space) -> None:
    """Refuse, in one line, a dataset whose tasks, observation width or action space differ from the run's."""
    names = demos.metadata.get("task_names")
    if names != list(task_names):
        raise MtrlError(f"demonstrations {demos.path} are for tasks {names}, but the run trains {list(task_names)}")
    if demos.obs.shape[1] != raw_dim:
        raise MtrlError(f"demonstrations {demos.path} have {demos.obs.shape[1]}-wide observations, the task set "
                        f"{raw_dim}")
    if demos.action_space != action_space:
        raise MtrlError(f"demonstrations {demos.path} have actions {demos.action_space}, the task set {action_space}")
