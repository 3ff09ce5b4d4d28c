"""Where the learner runs: ``device: auto | cpu | cuda | cuda:N``.

The learner (networks, optimiser state, the update) lives on this device; runners and
evaluation always act with CPU copies of the policy (:meth:`MTSAC.policy_state` returns CPU
tensors), and checkpoints are read back onto the CPU first (``map_location="cpu"``), so a run
trained on a GPU is evaluated, recorded and resumed on a machine without one.

What is placed on a GPU: MT-SAC's learner (any architecture, surgery method, precision) with one
learner process. The replay buffer stays in host memory: a batch is ``B x (2 obs + act + 3)``
floats (1280 x 105 x 4 B = 0.5 MB for MT10), copied per update, which is small next to the
update itself; keeping 1M transitions per task in GPU memory (MT50: 50 x 1M x 105 x 4 B = 21
GB) would tie the run to one GPU size for little gain. MT-PPO, data-parallel learners
(``learners > 1``), imitation (reward models) and CAMRL keep their learner on the CPU: ``auto``
picks the CPU for them and ``cuda`` is refused with one line (:func:`supported`).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch

DEVICES = ("auto", "cpu", "cuda")


def is_name(name: str) -> bool:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    return name in DEVICES or re.fullmatch(r"cuda:\d+", name) is not None


def why_not_gpu(cfg: Any, learners: int | None = None) -> str | None:
    """:func:`supported` for a run's config (``learners`` overrides ``cfg.learners``)."""
    return supported(cfg.algo, cfg.learners if learners is None else learners,
                     cfg.imitation or (cfg.algo if cfg.demos else None), cfg.curriculum)


def supported(algo: str, learners: int = 1, imitation: str | None = None, curriculum: str | None = None) -> str | None:
    """None if a run of this shape can put its learner on a GPU, else why not (one phrase)."""
    if algo != "mtsac":
        return f"algo={algo} (its learner runs on the CPU; MT-SAC's can use a GPU)"
    if learners > 1:
        return f"learners={learners} (data-parallel learners run on CPUs with gloo)"
    if imitation:
        return f"imitation={imitation} (the reward model and discriminator run on the CPU)"
    if curriculum == "camrl":
        return "curriculum=camrl (its transfer regulariser runs on the CPU)"
    return None


def resolve(device: str, why_not: str | None = None) -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is visible and the run supports it (``why_not`` is None),
    else ``cpu``; ``cpu`` / ``cuda`` / ``cuda:N`` as given, checked. Raises ValueError with one
    line for an unknown name, a GPU that is not there, or a run that cannot use one."""
    name = str(device)
    if not is_name(name):
        raise ValueError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")
    if name == "auto":
        return torch.device("cuda" if why_not is None and torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if why_not is not None:
        raise ValueError(f"device={name} is not built for {why_not}; use device=cpu or auto")
    if not torch.cuda.is_available():
        raise ValueError(f"device={name} but torch sees no GPU (torch {torch.__version__}, CUDA build: "
                         f"{torch.version.cuda or 'no'}); use device=cpu or auto")
    dev = torch.device(name)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={name} but only {torch.cuda.device_count()} GPU(s) are visible")
    return dev


def learner_device(agent) -> str:
    """Where ``agent`` updates, for the start-up line: ``cpu`` or ``cuda:0 (NVIDIA H100 ...)``."""
    dev = torch.device(getattr(agent, "device", "cpu"))
    if dev.type != "cuda":
        return "cpu"
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def cpu_policy(agent) -> torch.nn.Module:
    """The agent's evaluation policy (``eval_policy`` where it has one, else ``policy``) itself on
    a CPU learner; else a CPU copy of it (evaluation acts with CPU observations and the CPU
    generator, as runners do)."""
    policy = getattr(agent, "eval_policy", agent.policy)
    if torch.device(getattr(agent, "device", "cpu")).type == "cpu":
        return policy
    return copy.deepcopy(policy).to("cpu")
