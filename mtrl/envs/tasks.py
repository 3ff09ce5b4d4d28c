"""Single-task environment builders with one flat float32 observation and ``info["success"]``.

Every task in a task set is described by a :class:`TaskSpec`; :func:`build_task_env` turns it
into a gymnasium env whose observation is a flat ``float32`` vector (no task id yet: the
multi-task vector env pads it to the set's width and appends the one-hot) and whose ``info``
always holds ``success`` (0.0/1.0).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from mtrl.errors import MtrlError, choices, did_you_mean

#: MiniGrid cell encoding: one-hot object type (11), colour (6) and state (3), as in minigrid's
#: ``OneHotPartialObsWrapper``.
_MG_BITS = (11, 6, 3)
#: Width of a MiniGrid observation: the one-hot 7x7 egocentric view + direction one-hot.
MINIGRID_OBS_DIM = 7 * 7 * sum(_MG_BITS) + 4
#: Width of a Meta-World v3 observation.
METAWORLD_OBS_DIM = 39


@dataclass(frozen=True)
class TaskSpec:
    """One task of a task set.

    Attributes:
        name: display name (Meta-World task name, or gymnasium id).
        kind: ``"metaworld"``, ``"minigrid"`` or ``"gym"``.
        env_id: Meta-World task name (e.g. ``reach-v3``) or gymnasium id.
        goal_observable: Meta-World only: MT sets show the goal, ML sets hide it.
        kwargs: extra keyword arguments for ``gym.make``.
    """

    name: str
    kind: str
    env_id: str
    goal_observable: bool = True
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.name, self.kind, self.env_id, self.goal_observable))


def metaworld_task_names() -> list[str]:
    """All Meta-World v3 task names."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return list(ALL_V3_ENVIRONMENTS)


@functools.lru_cache(maxsize=128)
def _metaworld_goals(env_name: str, goal_observable: bool, seed: int) -> tuple[Any, list]:
    """The 50 training goals of one Meta-World task (MT1/ML1 benchmark of that task only).

    Built per task rather than through ``metaworld.MT50`` so a runner generates goals only for
    the tasks it serves (MT50 builds all 2,500 goals in ~40 s and ~1.3 GB).
    """
    import metaworld

    bench = metaworld.MT1(env_name, seed=seed) if goal_observable else metaworld.ML1(env_name, seed=seed)
    return bench.train_classes[env_name], bench.train_tasks


class MetaWorldSuccess(gym.Wrapper):
    """Casts the observation to float32; Meta-World already reports ``info["success"]``.

    Seeding: metaworld's ``RandomTaskSelectWrapper`` draws the goal *before* passing the seed
    on, i.e. from an unseeded generator on the first ``reset(seed=...)``. This wrapper seeds
    the env's generator first, so the first goal (and everything after) is reproducible.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (METAWORLD_OBS_DIM,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.env.unwrapped.np_random = np.random.default_rng(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        return obs.astype(np.float32), info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        info["success"] = float(info.get("success", 0.0))
        return obs.astype(np.float32), float(r), term, trunc, info


class MiniGridFlat(gym.ObservationWrapper):
    """MiniGrid's dict observation as one flat vector: one-hot 7x7 view and direction one-hot.

    The encoding is minigrid's ``OneHotPartialObsWrapper`` (object, colour, state bits per
    cell), computed with one vectorised scatter instead of that wrapper's Python loop over
    cells (a whole env step is ~1.35x faster here). Cells are laid out ``[7, 7, 20]`` row-major, so a
    CNN can reshape the first 980 values back into an image. (With the raw integer codes
    scaled to [0, 1] instead, MT-PPO's MLP had DoorKey-5x5 at 0 success after 1M steps.)

    Success is "reached the goal": MiniGrid's reward is positive only on success
    (``1 - 0.9 * steps / max_steps``) and the episode then terminates.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (MINIGRID_OBS_DIM,), np.float32)
        from mtrl.envs.minigrid_obs import install

        install(env)  # MiniGrid's gen_obs, computed ~3x faster (mtrl/envs/minigrid_obs.py)

    _offsets = np.array([0, _MG_BITS[0], _MG_BITS[0] + _MG_BITS[1]])
    _cells = np.arange(49)[:, None] * sum(_MG_BITS)

    def observation(self, obs):
        flat = np.zeros(MINIGRID_OBS_DIM, np.float32)
        codes = obs["image"].reshape(49, 3).astype(np.int64) + self._offsets
        flat[(self._cells + codes).reshape(-1)] = 1.0
        flat[MINIGRID_OBS_DIM - 4 + int(obs["direction"])] = 1.0
        return flat

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        info["success"] = 0.0
        return self.observation(obs), info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        info["success"] = float(term and r > 0)
        return self.observation(obs), float(r), term, trunc, info


class GenericSuccess(gym.Wrapper):
    """Flattens any Box/Discrete/Dict observation; success from ``info`` or a positive terminal reward."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._space = env.observation_space
        dim = gym.spaces.flatdim(self._space)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)

    def _flat(self, obs) -> np.ndarray:
        return np.asarray(gym.spaces.flatten(self._space, obs), np.float32)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        info["success"] = 0.0
        return self._flat(obs), info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        if "success" in info:
            success = float(info["success"])
        elif "is_success" in info:
            success = float(info["is_success"])
        else:
            success = float(term and r > 0)
        info["success"] = success
        return self._flat(obs), float(r), term, trunc, info


def build_task_env(spec: TaskSpec, seed: int, max_episode_steps: int | None = None,
                   render_mode: str | None = None, render_kwargs: dict | None = None) -> gym.Env:
    """Build one task's env (see module docstring). ``seed`` fixes Meta-World's goal list.

    ``render_kwargs`` (Meta-World only): ``width``, ``height``, ``camera_name`` of the renderer.
    """
    if spec.kind == "metaworld":
        from metaworld.wrappers import RandomTaskSelectWrapper

        cls, goals = _metaworld_goals(spec.env_id, spec.goal_observable, seed)
        env = cls(render_mode=render_mode, **(render_kwargs or {}), **spec.kwargs)
        # Meta-World counts steps itself and raises past max_path_length (500).
        limit = min(max_episode_steps or env.max_path_length, env.max_path_length)
        env = gym.wrappers.TimeLimit(env, limit)
        env = RandomTaskSelectWrapper(env, goals)  # a new training goal at every reset
        return MetaWorldSuccess(env)
    kwargs = dict(spec.kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if spec.kind == "minigrid":
        import minigrid  # noqa: F401  (registers the MiniGrid ids)

        if max_episode_steps is not None:
            kwargs["max_steps"] = max_episode_steps
        return MiniGridFlat(_gym_make(spec.env_id, **kwargs))
    env = _gym_make(spec.env_id, max_episode_steps=max_episode_steps, **kwargs)
    return GenericSuccess(env)


def _gym_make(env_id: str, **kwargs) -> gym.Env:
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        raise MtrlError(f"cannot make gymnasium env {env_id!r}: {exc}") from None


def spec_from_name(name: str) -> TaskSpec:
    """A task from a custom YAML list: a Meta-World task name or a gymnasium id."""
    mw = metaworld_task_names()
    if name in mw:
        return TaskSpec(name=name, kind="metaworld", env_id=name)
    if name.startswith(("MiniGrid-", "BabyAI-")):
        import minigrid  # noqa: F401

        if name not in gym.registry:
            close = [k for k in gym.registry if k.startswith(name.split("-")[0] + "-" + name.split("-")[1])][:10] if "-" in name else []
            raise MtrlError(f"unknown MiniGrid id {name!r}; similar ids: {choices(close) or 'none'}")
        return TaskSpec(name=name, kind="minigrid", env_id=name)
    if name in gym.registry:
        return TaskSpec(name=name, kind="gym", env_id=name)
    if name.endswith("-v3") or name.endswith("-v2"):
        raise MtrlError(f"unknown Meta-World task {name!r}; {did_you_mean(name, mw)}valid tasks: {choices(mw)}")
    raise MtrlError(
        f"unknown task {name!r}: not a Meta-World v3 task name (e.g. 'reach-v3') "
        "nor a registered gymnasium id (e.g. 'MiniGrid-Empty-5x5-v0', 'CartPole-v1')"
    )


def raw_obs_dim(spec: TaskSpec) -> int:
    """Width of the task's flat observation without building a Meta-World env."""
    if spec.kind == "metaworld":
        return METAWORLD_OBS_DIM
    if spec.kind == "minigrid":
        return MINIGRID_OBS_DIM
    env = build_task_env(spec, seed=0)
    dim = int(env.observation_space.shape[0])
    env.close()
    return dim


def action_space_of(spec: TaskSpec) -> gym.Space:
    """The task's action space (Meta-World: Box(-1, 1, (4,)); MiniGrid: Discrete(7))."""
    if spec.kind == "metaworld":
        return gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    if spec.kind == "minigrid":
        return gym.spaces.Discrete(7)
    env = build_task_env(spec, seed=0)
    space = env.action_space
    env.close()
    return space
