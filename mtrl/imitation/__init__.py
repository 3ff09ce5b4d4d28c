"""Learning from demonstrations: expert datasets (:mod:`~mtrl.imitation.demos`), scripted experts
(:mod:`~mtrl.imitation.experts`) and reward models that relabel rollouts before the learner sees
them (:mod:`~mtrl.imitation.adversarial`: GAIL, AIRL; :mod:`~mtrl.imitation.mhairl`: MH-AIRL), selected by ``imitation: NAME`` with
``imitation_args`` and ``demos: PATH`` in the config."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtrl.errors import MtrlError, choices, did_you_mean

METHODS = ("gail", "airl", "mhairl")
HOW_TO = "make them with `mtrl demos TASKSET --episodes N` and pass demos=PATH (the folder it printed)"


def validate(cfg: Any, task_names: list[str]) -> None:
    """Cheap config checks (name, algorithm, the demos folder and its task names); raises MtrlError."""
    if cfg.curriculum is not None:
        raise MtrlError(f"curriculum {cfg.curriculum!r} steers by the environment's success, which learning from "
                        "demonstrations must not see; drop the curriculum or the demos")
    if cfg.algo == "bc":
        if cfg.ppo.heads == "options":
            raise MtrlError("algo=bc trains a flat policy; ppo.heads=options is for imitation=mhairl")
        if cfg.imitation is not None:
            raise MtrlError(f"algo=bc learns from the demos directly; drop imitation={cfg.imitation}")
        if not cfg.demos:
            raise MtrlError(f"algo=bc needs demonstrations: {HOW_TO}")
        meta = _check_demos_folder(cfg, task_names)
        if not meta.get("labels", True) and (cfg.one_hot or cfg.ppo.heads != "single" or cfg.ppo.arch != "mlp"):
            raise MtrlError(f"BC from unlabelled demonstrations ({cfg.demos}) cannot feed the policy a task id; "
                            "set one_hot=false, ppo.heads=single and ppo.arch=mlp (one policy over observations) "
                            "or use labelled demos")
        return
    if cfg.imitation is None:
        raise MtrlError("demos= is set but no imitation method is; use an imitation preset (agents/gail.yaml, "
                        "agents/airl.yaml, agents/mhairl.yaml, agents/bc.yaml) or imitation=gail|airl|mhairl")
    if cfg.imitation not in METHODS:
        raise MtrlError(f"unknown imitation {cfg.imitation!r}; {did_you_mean(cfg.imitation, METHODS)}valid methods: {choices(METHODS)}")
    if cfg.algo != "mtppo" and not (cfg.algo == "mtsac" and cfg.imitation == "gail"):
        raise MtrlError(f"imitation {cfg.imitation!r} trains MT-PPO (MT-SAC: gail only); got algo={cfg.algo}")
    if cfg.imitation == "mhairl" and not cfg.one_hot:
        raise MtrlError("mhairl conditions both policy levels on the task context: keep one_hot=true")
    if (cfg.imitation == "mhairl") != (cfg.ppo.heads == "options"):
        raise MtrlError("mhairl learns an option policy and only it: use ppo.heads=options with imitation=mhairl "
                        f"(see agents/mhairl.yaml); got imitation={cfg.imitation}, ppo.heads={cfg.ppo.heads}")
    if not cfg.demos:
        raise MtrlError(f"imitation {cfg.imitation!r} needs demonstrations: {HOW_TO}")
    _check_demos_folder(cfg, task_names)
    hidden = cfg.imitation_args.get("hidden", [256])
    if not isinstance(hidden, Sequence) or isinstance(hidden, str) or not all(
            isinstance(h, int) and h > 0 for h in hidden):
        raise MtrlError(f"imitation_args.hidden must be a list of layer widths, e.g. [256, 256]; got {hidden}")
    valid = _ARGS + (_MH_ARGS if cfg.imitation == "mhairl" else ("use_labels", "reward")) + (
        ("policy_buffer",) if cfg.algo == "mtsac" else ())
    bad = sorted(set(cfg.imitation_args) - set(valid))
    if bad:
        raise MtrlError(f"imitation {cfg.imitation!r} has no argument {bad[0]!r}; {did_you_mean(bad[0], valid)}valid arguments: {choices(valid)}")
    _check_bc_args(cfg.imitation_args)


def _check_bc_args(args: Any) -> None:
    """MH-AIRL's behaviour-cloning options (see mtrl.imitation.mhairl, choice 6), as one line each."""
    for name, lo in (("bc_init", 0), ("bc_steps", 0), ("bc_estep", 1), ("bc_batch", 1)):
        v = args.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
            raise MtrlError(f"imitation_args.{name} must be an integer >= {lo}, got {v!r}")
    lr = args.get("bc_lr")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
        raise MtrlError(f"imitation_args.bc_lr must be a number > 0, got {lr!r}")


def _check_demos_folder(cfg: Any, task_names: list[str]) -> dict[str, Any]:
    p = Path(cfg.demos)
    meta_path = p / "data" / "metadata.json" if (p / "data").is_dir() else p / "metadata.json"
    if not meta_path.is_file():
        raise MtrlError(f"demos={cfg.demos} is not a demonstration dataset (no metadata.json); {HOW_TO}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise MtrlError(f"cannot read {meta_path}: {exc}; {HOW_TO}") from None
    names = meta.get("task_names")
    if names != list(task_names):
        raise MtrlError(f"demos={cfg.demos} are for tasks {names}, but the run trains {list(task_names)}")
    return meta


_ARGS = ("hidden", "lr", "grad_penalty", "disc_updates", "disc_batch")
_MH_ARGS = ("alpha_mi", "alpha_di", "estep_every", "posterior_updates", "bc_init", "bc_steps", "bc_estep", "bc_lr", "bc_batch")


def build(cfg: Any, probe: Any, agent: Any):
    """Loads and checks the demos; returns the run's reward model attached to the learner, or
    None for behaviour cloning (the demos go to the BC learner itself)."""
    from omegaconf import OmegaConf

    from mtrl.imitation.adversarial import AdversarialReward
    from mtrl.imitation.demos import check_matches, load_demos

    demos = load_demos(cfg.demos)
    check_matches(demos, probe.task_names, probe.raw_dim, probe.task_action_space)
    if cfg.algo == "bc":
        agent.set_demos(demos, probe.raw_dim, cfg.one_hot)
        return None
    args = OmegaConf.to_container(cfg.imitation_args)
    if cfg.imitation == "mhairl":
        from mtrl.imitation.mhairl import MHAIRLReward

        mh = MHAIRLReward(demos, probe.num_tasks, probe.raw_dim, probe.task_action_space, cfg.ppo.options,
                          gamma=cfg.ppo.gamma, seed=cfg.seed, policy_one_hot=cfg.one_hot, **args)
        mh.attach(agent)
        return mh
    off_policy = cfg.algo == "mtsac"
    model = AdversarialReward(cfg.imitation, demos, probe.num_tasks, probe.raw_dim, probe.single_action_space,
                              gamma=cfg.sac.gamma if off_policy else cfg.ppo.gamma, seed=cfg.seed,
                              policy_one_hot=cfg.one_hot, off_policy=off_policy, **args)
    model.attach(agent)
    return model
