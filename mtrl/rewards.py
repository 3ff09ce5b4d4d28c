"""The reward seam: a model that relabels experience before the learner sees it.

Imitation learning (GAIL, AIRL, MH-AIRL) replaces the environment's reward with a learned one;
per-task reward normalisation (:mod:`mtrl.agents.reward_norm`) rescales it. The trainer passes
every on-policy rollout (``[S, N]`` arrays, see ``Runner.sample``, kind ``"rollout"``), every
off-policy replay batch (``"batch"``) and the newly collected off-policy transitions before they
enter the replay buffer (``"collected"``) through ``update`` then ``relabel``, so a model plugs
in here without a branch in the training loop. The environment's own reward,
return and success stay in the episode statistics for logging; only the learner sees the
relabelled ``rewards``.
"""

from __future__ import annotations

from typing import Any, Protocol


class RewardModel(Protocol):
    """What the trainer calls; state goes into checkpoints with ``state_dict``/``load_state_dict``."""

    def relabel(self, data: dict[str, Any], kind: str) -> dict[str, Any]:
        """Return ``data`` with ``rewards`` replaced; ``kind`` is ``"rollout"``, ``"batch"`` or
        ``"collected"`` (models that relabel at sampling time return collected data unchanged)."""
        ...

    def update(self, data: dict[str, Any], kind: str) -> dict[str, Any]:
        """Train the reward model on the latest experience; returns values to log."""
        ...

    def reward_per_task(self, data: dict[str, Any]) -> Any:
        """Mean relabelled reward per task (``[T]``), for TensorBoard."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
