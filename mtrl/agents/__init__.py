"""Algorithms (registry name -> learner class and its config dataclass)."""

from mtrl.agents.ppo import MTPPO, PPOConfig

ALGORITHMS = {"mtppo": MTPPO}

__all__ = ["ALGORITHMS", "MTPPO", "PPOConfig"]
