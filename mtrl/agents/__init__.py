"""Algorithms: registry name -> (learner class, config section), and the runner policies."""

from __future__ import annotations

from mtrl.agents.bc import BC
from mtrl.agents.ppo import MTPPO, PPOConfig, build_policy
from mtrl.agents.sac import MTSAC, SACConfig

#: name -> (learner class, the config key holding its hyper-parameters)
ALGORITHMS: dict[str, tuple[type, str]] = {"mtppo": (MTPPO, "ppo"), "mtsac": (MTSAC, "sac"), "bc": (BC, "ppo")}

__all__ = ["ALGORITHMS", "BC", "MTPPO", "MTSAC", "PPOConfig", "SACConfig", "build_policy"]
