"""The reward seam: a model that relabels experience before the learner sees it.

Imitation learning (GAIL, AIRL, MH-AIRL) replaces the environment's reward with a learned one.
The trainer passes every on-policy rollout (``[S, N]`` arrays, see ``Runner.sample``) and every
off-policy replay batch through ``relabel`` and calls ``update`` once per iteration, so an
algorithm plugs in here without a branch in the training loop. The environment's own reward,
return and success stay in the episode statistics for logging; only the learner sees the
relabelled ``rewards``.
"""

from __future__ import annotations

from typing import Any, Protocol


class RewardModel(Protocol):
    """What the trainer calls; state goes into checkpoints with ``state_dict``/``load_state_dict``."""

    def relabel(self, data: dict[str, Any], kind: str) -> dict[str, Any]:
        """Return ``data`` with ``rewards`` replaced; ``kind`` is ``"rollout"`` or ``"batch"``."""
        ...

    def update(self, data: dict[str, Any], kind: str) -> dict[str, Any]:
        """Train the reward model on the latest experience; returns values to log."""
        ...

    def reward_per_task(self, data: dict[str, Any]) -> Any:
        """Mean relabelled reward per task (``[T]``), for TensorBoard."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
