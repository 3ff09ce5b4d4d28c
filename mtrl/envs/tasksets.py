"""Registry of task sets: ``metaworld/MT10``, ``minigrid/MT5``, ... and custom YAML lists.

A :class:`TaskSet` is a name plus its training tasks (and, for ML10/ML45, held-out test
tasks). Adding a set is one :func:`register` call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mtrl.envs.tasks import TaskSpec, metaworld_task_names, spec_from_name
from mtrl.errors import MtrlError, choices, did_you_mean


@dataclass
class TaskSet:
    """Tasks trained together (``train``) and held out (``test``, ML sets only)."""

    name: str
    description: str
    train: list[TaskSpec]
    test: list[TaskSpec] = field(default_factory=list)

    def tasks(self, split: str = "train") -> list[TaskSpec]:
        """Tasks of one split: ``train`` (default) or ``test``."""
        if split == "train":
            return self.train
        if split == "test":
            if not self.test:
                raise MtrlError(f"task set {self.name!r} has no test split; ML10 and ML45 have one")
            return self.test
        raise MtrlError(f"unknown split {split!r}; valid splits: 'train', 'test'")


_REGISTRY: dict[str, Callable[[], TaskSet]] = {}


def register(name: str, factory: Callable[[], TaskSet]) -> None:
    """Register a task set under ``name`` (a factory, so nothing is built at import)."""
    _REGISTRY[name] = factory


def names() -> list[str]:
    """All registered task-set names, plus the parametric ``metaworld/MT1:<task>``."""
    return sorted(_REGISTRY) + ["metaworld/MT1:<task>"]


def _mw(names_: Sequence[str], observable: bool = True) -> list[TaskSpec]:
    return [TaskSpec(name=n, kind="metaworld", env_id=n, goal_observable=observable) for n in names_]


def _mt(key: str, label: str) -> Callable[[], TaskSet]:
    def factory() -> TaskSet:
        from metaworld import env_dict

        return TaskSet(f"metaworld/{label}", f"Meta-World {label} (v3, goal observable, 500 steps)",
                       _mw(getattr(env_dict, key)))

    return factory


def _ml(key: str, label: str) -> Callable[[], TaskSet]:
    def factory() -> TaskSet:
        from metaworld import env_dict

        split = getattr(env_dict, key)
        return TaskSet(f"metaworld/{label}", f"Meta-World {label} (v3, goal hidden; train + held-out test tasks)",
                       _mw(split["train"], False), _mw(split["test"], False))

    return factory


def _minigrid(name: str, ids: Sequence[str], description: str) -> Callable[[], TaskSet]:
    def factory() -> TaskSet:
        return TaskSet(name, description, [TaskSpec(name=i.removeprefix("MiniGrid-").removesuffix("-v0"),
                                                    kind="minigrid", env_id=i) for i in ids])

    return factory


register("metaworld/MT10", _mt("MT10_V3", "MT10"))
register("metaworld/MT25", _mt("MT25_V3", "MT25"))
register("metaworld/MT50", _mt("MT50_V3", "MT50"))
register("metaworld/ML10", _ml("ML10_V3", "ML10"))
register("metaworld/ML45", _ml("ML45_V3", "ML45"))
register("metaworld/reach4", lambda: TaskSet(
    "metaworld/reach4", "4 Meta-World tasks a 2-core CPU trains in under an hour",
    _mw(["reach-v3", "drawer-close-v3", "window-open-v3", "button-press-topdown-v3"])))
register("minigrid/MT5", _minigrid(
    "minigrid/MT5",
    ["MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-Random-6x6-v0", "MiniGrid-LavaGapS5-v0",
     "MiniGrid-DoorKey-5x5-v0", "MiniGrid-Unlock-v0"],
    "5 MiniGrid tasks from easy to hard: Empty, Empty-Random, LavaGap, DoorKey, Unlock"))
#: Stepping stone -> target pairs where the schedule should matter (see envs/minigrid-ladder.yaml
#: for the task graph and why these pairs): uniform MT-PPO solves the stones, not the targets.
LADDER = {"MiniGrid-DoorKey-6x6-v0": "MiniGrid-DoorKey-16x16-v0",
          "MiniGrid-MultiRoom-N2-S4-v0": "MiniGrid-MultiRoom-N6-v0",
          "MiniGrid-KeyCorridorS3R1-v0": "MiniGrid-KeyCorridorS3R3-v0",
          "MiniGrid-Unlock-v0": "MiniGrid-BlockedUnlockPickup-v0"}
register("minigrid/ladder", _minigrid(
    "minigrid/ladder", [i for pair in LADDER.items() for i in pair],
    "4 stepping-stone -> target pairs for curricula: DoorKey, MultiRoom, KeyCorridor, Unlock"))
# Two three-rung chains (stone -> target -> harder target); see envs/minigrid-ladder2.yaml.
LADDER2 = [("MiniGrid-DoorKey-6x6-v0", "MiniGrid-KeyCorridorS3R1-v0", "MiniGrid-KeyCorridorS3R2-v0"),
           ("MiniGrid-Unlock-v0", "MiniGrid-UnlockPickup-v0", "MiniGrid-BlockedUnlockPickup-v0")]
register("minigrid/ladder2", _minigrid(
    "minigrid/ladder2", [t for chain in LADDER2 for t in chain],
    "2 three-rung chains for curricula: DoorKey -> KeyCorridor R1 -> R2, Unlock -> UnlockPickup -> Blocked"))
# Two five-rung chains whose top rungs are out of a 2M-step budget's reach; see envs/minigrid-ladder3.yaml.
LADDER3 = [("MiniGrid-DoorKey-6x6-v0", "MiniGrid-KeyCorridorS3R1-v0", "MiniGrid-KeyCorridorS3R2-v0",
            "MiniGrid-KeyCorridorS4R3-v0", "MiniGrid-KeyCorridorS5R3-v0"),
           ("MiniGrid-Unlock-v0", "MiniGrid-UnlockPickup-v0", "MiniGrid-BlockedUnlockPickup-v0",
            "MiniGrid-ObstructedMaze-1Dlhb-v0", "MiniGrid-ObstructedMaze-2Dlh-v0")]
register("minigrid/ladder3", _minigrid(
    "minigrid/ladder3", [t for chain in LADDER3 for t in chain],
    "2 five-rung chains for curricula, top rungs out of reach: DoorKey -> KeyCorridor S3R1..S5R3, "
    "Unlock -> ... -> ObstructedMaze-2Dlh"))
# Three mid-sized targets in a crowd of 17 easy, mission-free tasks (no stepping stones between
# them); see envs/minigrid-crowd.yaml. Uniform slots give each target 1/20 of the data.
CROWD_EASY = ["Empty-5x5", "Empty-6x6", "Empty-8x8", "Empty-16x16", "Empty-Random-5x5", "Empty-Random-6x6",
              "LavaGapS5", "LavaGapS6", "LavaGapS7", "DistShift1", "DistShift2", "Dynamic-Obstacles-5x5",
              "Dynamic-Obstacles-Random-5x5", "Dynamic-Obstacles-6x6", "Dynamic-Obstacles-Random-6x6",
              "MultiRoom-N2-S4", "SimpleCrossingS9N1"]
CROWD_TARGETS = ["DoorKey-6x6", "Unlock", "KeyCorridorS3R1"]
register("minigrid/crowd", _minigrid(
    "minigrid/crowd", [f"MiniGrid-{t}-v0" for t in CROWD_EASY + CROWD_TARGETS],
    "3 key-and-door targets among 17 easy tasks for curricula: uniform gives each target 1/20 of the data"))
# The same three targets among 10 tasks out of a 2M-step budget's reach (no transfer to offer);
# see envs/minigrid-distract.yaml.
DISTRACT_FAR = ["DoorKey-16x16", "MultiRoom-N6", "KeyCorridorS4R3", "KeyCorridorS5R3", "KeyCorridorS6R3",
                "ObstructedMaze-1Dlhb", "ObstructedMaze-2Dlh", "LavaCrossingS11N5", "FourRooms", "SimpleCrossingS11N5"]
register("minigrid/distract", _minigrid(
    "minigrid/distract", [f"MiniGrid-{t}-v0" for t in DISTRACT_FAR + CROWD_TARGETS],
    "3 key-and-door targets among 10 tasks out of reach for curricula: uniform gives the targets 3/13 of the data"))
# Ladder 2's six productive tasks (two stones, four targets) among eight sinks: tasks that return
# nothing at a 4M-step budget (KeyCorridorS4R3-S6R3, the larger ObstructedMazes, Playground, which
# has no goal at all); see envs/minigrid-sink.yaml. Uniform slots give the sinks 8/14 of the data.
# (gymnasium ids without "MiniGrid-": the ObstructedMazes are the current v1)
SINK_PRODUCTIVE = ["DoorKey-6x6-v0", "KeyCorridorS3R1-v0", "KeyCorridorS3R2-v0", "Unlock-v0", "UnlockPickup-v0",
                   "BlockedUnlockPickup-v0"]
SINK_SINKS = ["KeyCorridorS4R3-v0", "KeyCorridorS5R3-v0", "KeyCorridorS6R3-v0", "ObstructedMaze-2Dlhb-v1",
              "ObstructedMaze-1Q-v1", "ObstructedMaze-2Q-v1", "ObstructedMaze-Full-v1", "Playground-v0"]
register("minigrid/sink", _minigrid(
    "minigrid/sink", [f"MiniGrid-{t}" for t in SINK_PRODUCTIVE + SINK_SINKS],
    "2 stones and 4 key-and-door targets among 8 tasks that return nothing, for curricula: "
    "uniform gives the sinks 8/14 of the data"))
# Ladder 2's six productive tasks among eight mission tasks that a policy without the mission text
# can only solve by chance (go to / fetch / put near the named door or object): they pay for a
# pickup or `done` at whichever object or door chance makes the named one, where the sinks paid
# nothing; see envs/minigrid-interfere.yaml.
INTERFERE = ["GoToDoor-6x6-v0", "GoToDoor-8x8-v0", "Fetch-6x6-N2-v0", "Fetch-8x8-N3-v0", "GoToObject-6x6-N2-v0",
             "GoToObject-8x8-N2-v0", "PutNear-6x6-N2-v0", "PutNear-8x8-N3-v0"]
register("minigrid/interfere", _minigrid(
    "minigrid/interfere", [f"MiniGrid-{t}" for t in SINK_PRODUCTIVE + INTERFERE],
    "2 stones and 4 key-and-door targets among 8 mission tasks solvable only by chance without the "
    "mission text, for curricula: uniform gives them 8/14 of the data"))
register("minigrid/MT3", _minigrid(
    "minigrid/MT3", ["MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-Random-6x6-v0", "MiniGrid-LavaGapS5-v0"],
    "3 small MiniGrid tasks for quick tests"))


def custom(tasks: Sequence[str], name: str = "custom") -> TaskSet:
    """A task set from a list of Meta-World task names and/or gymnasium ids."""
    if not tasks:
        raise MtrlError("a custom task set needs a non-empty 'tasks' list")
    specs = [spec_from_name(str(t)) for t in tasks]
    if len({s.name for s in specs}) != len(specs):
        raise MtrlError(f"duplicate task in custom task set: {list(tasks)}")
    return TaskSet(name, f"custom set of {len(specs)} tasks", specs)


def get(name: str, tasks: Sequence[str] | None = None) -> TaskSet:
    """Look up a task set by registry name, ``metaworld/MT1:<task>``, or a YAML file with ``tasks:``."""
    if not tasks and name in ("custom", "", None):
        raise MtrlError(f"the task list of task set {name or 'custom'!r} is empty (`tasks: []`); name at least one "
                        "Meta-World task or gymnasium id, or drop `tasks` to use a registered set")
    if tasks:
        return custom(tasks, name or "custom")
    if name.startswith("metaworld/MT1:"):
        task = name.split(":", 1)[1]
        if task not in metaworld_task_names():
            raise MtrlError(f"unknown Meta-World task {task!r}; {did_you_mean(task, metaworld_task_names())}valid tasks: {choices(metaworld_task_names())}")
        return TaskSet(name, f"Meta-World MT1 {task}", _mw([task]))
    if name in _REGISTRY:
        return _REGISTRY[name]()
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        try:
            data = yaml.safe_load(Path(name).read_text())
        except yaml.YAMLError as exc:
            raise MtrlError(f"cannot parse {name}: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
            raise MtrlError(f"{name} must hold a 'tasks:' list of Meta-World names or gymnasium ids")
        return custom(data["tasks"], name)
    raise MtrlError(f"unknown task set {name!r}; {did_you_mean(name, names())}valid task sets: {choices(names())} "
                    "or a YAML file with a 'tasks:' list")
