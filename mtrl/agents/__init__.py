"""Algorithms: registry name -> (learner class, config section), and the runner policies."""

from __future__ import annotations

from typing import Any

from torch import nn

from mtrl.agents.bc import BC
from mtrl.agents.networks import ActorCritic
from mtrl.agents.ppo import MTPPO, PPOConfig
from mtrl.agents.sac import MTSAC, SACConfig
from mtrl.agents.sac_networks import TanhGaussianActor

#: name -> (learner class, the config key holding its hyper-parameters)
ALGORITHMS: dict[str, tuple[type, str]] = {"mtppo": (MTPPO, "ppo"), "mtsac": (MTSAC, "sac"), "bc": (BC, "ppo")}

_POLICIES: dict[str, type[nn.Module]] = {"ppo": ActorCritic, "sac": TanhGaussianActor}


def build_policy(spec: dict[str, Any]) -> nn.Module:
    """The network a runner steps envs with, from a learner's ``policy_spec``."""
    spec = dict(spec)
    return _POLICIES[spec.pop("kind", "ppo")](**spec)


__all__ = ["ALGORITHMS", "BC", "MTPPO", "MTSAC", "PPOConfig", "SACConfig", "build_policy"]
