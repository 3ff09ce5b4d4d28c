"""One typed, validated training config (OmegaConf structured config).

``mtrl train ENV_PRESET AGENT_PRESET key=value ...`` merges, in order: the defaults below, the
env preset (``envs/*.yaml``: which tasks), the agent preset (``agents/*.yaml``: which
algorithm and its hyper-parameters) and the ``key=value`` overrides (dotted for nested keys,
e.g. ``ppo.lr=1e-3``). Unknown keys, wrong types and bad values end in an :class:`MtrlError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mtrl.agents import ALGORITHMS, PPOConfig, SACConfig
from mtrl.agents.precision import PRECISIONS
from mtrl.errors import MtrlError, choices, did_you_mean

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TrainConfig:
    """Everything a run needs; saved as ``config.yaml`` in the run folder."""

    taskset: str = MISSING  # registry name (see `mtrl tasksets`), or "custom" with `tasks`
    tasks: list[str] = field(default_factory=list)  # custom set: Meta-World names / gymnasium ids
    split: str = "train"  # train | test (ML10/ML45)
    one_hot: bool = True  # append the one-hot task id to observations
    max_episode_steps: int | None = None  # None: each task's own limit
    envs_per_task: int = 1
    algo: str = "mtppo"
    ppo: PPOConfig = field(default_factory=PPOConfig)
    surgery: str = "mean"  # how per-task gradients combine (see mtrl.surgery.names())
    surgery_args: dict[str, Any] = field(default_factory=dict)  # e.g. {c: 0.9} for cagrad
    diagnostics_every: int = 0  # updates between gradient-conflict diagnostics (0: off)
    curriculum: str | None = None  # task scheduler (see mtrl.curriculum.names()); None: fixed balanced slots
    task_share: str = "episodes"  # what a scheduler's weights set: the share of episodes or of env steps
    curriculum_args: dict[str, Any] = field(default_factory=dict)  # e.g. {tau: 0.2} for success
    task_graph: dict[str, list[str]] = field(default_factory=dict)  # env preset: task -> tasks it leads to
    imitation: str | None = None  # learn from demonstrations: gail | airl | mhairl (None: the env's reward)
    imitation_args: dict[str, Any] = field(default_factory=dict)  # e.g. {grad_penalty: 10, disc_updates: 4}
    demos: str | None = None  # demonstration dataset folder (`mtrl demos` prints it)
    sac: SACConfig = field(default_factory=SACConfig)
    total_steps: int = 200_000  # environment steps summed over all tasks
    seed: int = 0
    runners: int = 0  # 0: in-process sampling; N: N Ray actors
    runner_cpus: float = 1.0
    learners: int = 1  # N > 1: N data-parallel MT-SAC learners on Ray, each on 1/N of every batch (mtrl.learners)
    learner_cpus: float = 1.0  # CPUs (and torch threads) of each data-parallel learner
    # Where the learner runs (mtrl.agents.device): auto (a GPU when one is visible and the run can use
    # it: MT-SAC with one learner), cpu, cuda or cuda:N. Runners and evaluation always act on CPUs.
    device: str = "auto"
    # Per-task reward scale (mtrl.agents.reward_norm): none | running_std | max_return
    reward_norm: str = "none"
    obs: str = "flat"  # flat | image: MT-PPO on MiniGrid sees the 7x7 view as an image through a CNN
    reward_norm_v_max: float = 10.0  # max_return: the largest discounted return seen maps to this
    runner_max_restarts: int = 5  # dead Ray runners replaced within runner_restart_window s before the run stops
    runner_restart_window: float = 600.0
    run_dir: str | None = None  # default: runs/<taskset>_<algo>_<seed>_<time>
    checkpoint_every: int = 100_000  # env steps between checkpoints (0: only at the end)
    keep_checkpoints: int = 3
    # Pickle env state into checkpoints so resume continues episodes exactly. None (auto): yes,
    # unless the set has Meta-World tasks, whose pickled MuJoCo model+data is ~42 MB per env;
    # those resume with the learner exact and the in-progress episodes restarted.
    save_env_state: bool | None = None
    log_every: int = 1  # updates between TensorBoard/console logs
    episode_window: int = 20  # episodes per task averaged in progress lines
    eval_every: int = 0  # env steps between deterministic evaluations (0: off)
    eval_episodes: int = 10  # episodes per task in each evaluation
    video_every: int = 0  # env steps between rollout videos to TensorBoard + videos/ (0: off)
    video_max_steps: int = 200  # steps per recorded episode
    # Learner torch threads. 1 (default) makes a run bitwise reproducible: with more threads,
    # CPU GEMM reductions split by thread scheduling and results differ in the last bits.
    threads: int = 1


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MtrlError(f"malformed YAML in {path}{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MtrlError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    return data


def resolve_preset(name: str, kind: str) -> Path:
    """Find a preset: a path as given, or ``<kind>/<name>.yaml`` here or in the mtrl checkout."""
    p = Path(name)
    if p.is_file():
        return p
    for base in (Path.cwd() / kind, REPO_ROOT / kind):
        for cand in (base / name, base / f"{name}.yaml"):
            if cand.is_file():
                return cand
    avail = sorted({q.stem for base in (Path.cwd() / kind, REPO_ROOT / kind) if base.is_dir()
                    for q in base.glob("*.yaml")})
    raise MtrlError(f"no {kind} preset {name!r}; {did_you_mean(name, avail)}valid presets: {choices(avail)} or a path to a YAML file")


def _valid_keys(node: Any, prefix: str = "") -> list[str]:
    out = []
    for k in node:
        v = node[k] if not OmegaConf.is_missing(node, k) else None
        if isinstance(v, DictConfig):
            out += _valid_keys(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def _merge(base: DictConfig, data: dict[str, Any], source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, data)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        msg = str(exc).splitlines()[0]
        if "not in" in msg or "Key '" in msg and "not" in msg:
            raise MtrlError(f"unknown config key {key!r} in {source}; {did_you_mean(key, _valid_keys(base))}"
                            f"valid keys: {', '.join(_valid_keys(base))}") from None
        raise MtrlError(f"bad value for {key!r} in {source}: {msg}") from None
    except (TypeError, ValueError) as exc:  # not OmegaConf's own: e.g. a list where a mapping belongs
        raise MtrlError(f"bad value in {source}: {str(exc).splitlines()[0]}") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> nested dict with YAML-typed values."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise MtrlError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _merge_preset(cfg: DictConfig, name: str, kind: str, chain: tuple[Path, ...] = ()) -> DictConfig:
    """Merge one preset; ``base: OTHER`` inside it merges preset OTHER (same kind) first."""
    path = resolve_preset(name, kind)
    if path.resolve() in chain:
        raise MtrlError(f"preset {path} names itself as a base (through {' -> '.join(map(str, chain))})")
    data = _load_yaml(path)
    parent = data.pop("base", None)
    if path.parent.name in ("envs", "agents"):  # a file in agents/ given where an env preset goes: its base is an agent
        kind = path.parent.name
    if parent is not None:
        if not isinstance(parent, str):
            raise MtrlError(f"`base` in {path} must name one preset, got {parent!r}")
        try:
            cfg = _merge_preset(cfg, parent, kind, (*chain, path.resolve()))
        except MtrlError as exc:
            raise MtrlError(f"{exc} (base of {path})") from None
    return _merge(cfg, data, str(path))


def build_config(presets: list[str], overrides: list[str], base: DictConfig | None = None) -> DictConfig:
    """Merge defaults (or ``base``), env/agent presets and overrides, then validate."""
    cfg = base if base is not None else OmegaConf.structured(TrainConfig)
    for i, name in enumerate(presets):
        cfg = _merge_preset(cfg, name, "envs" if i == 0 else "agents")
    cfg = _merge(cfg, parse_overrides(overrides), "command-line overrides")
    validate(cfg)
    return cfg


def validate(cfg: DictConfig) -> None:
    """Value checks that types alone cannot express; raises :class:`MtrlError`."""
    if OmegaConf.is_missing(cfg, "taskset"):
        raise MtrlError("no task set given: pass an env preset (e.g. envs/minigrid-mt5.yaml) or taskset=NAME")
    if cfg.algo not in ALGORITHMS:
        raise MtrlError(f"unknown algo {cfg.algo!r}; {did_you_mean(cfg.algo, ALGORITHMS)}valid algorithms: {choices(ALGORITHMS)}")
    positive = {"total_steps": cfg.total_steps, "envs_per_task": cfg.envs_per_task,
                "runner_cpus": cfg.runner_cpus,
                "keep_checkpoints": cfg.keep_checkpoints, "log_every": cfg.log_every,
                "episode_window": cfg.episode_window, "ppo.num_steps": cfg.ppo.num_steps,
                "ppo.epochs": cfg.ppo.epochs, "ppo.minibatches": cfg.ppo.minibatches}
    for key, v in positive.items():
        if v is None or v <= 0:
            raise MtrlError(f"{key} must be a positive number, got {v}")
    for key, v in {"runners": cfg.runners, "checkpoint_every": cfg.checkpoint_every, "threads": cfg.threads,
                   "runner_max_restarts": cfg.runner_max_restarts}.items():
        if v < 0:
            raise MtrlError(f"{key} must be >= 0, got {v}")
    if cfg.learners < 1 or cfg.learner_cpus <= 0:
        raise MtrlError(f"learners must be >= 1 and learner_cpus > 0, got {cfg.learners}, {cfg.learner_cpus}")
    if cfg.learners > 1:
        if cfg.algo != "mtsac":
            raise MtrlError(f"learners={cfg.learners} (data-parallel learners) works with algo=mtsac, got {cfg.algo}; "
                            "MT-PPO here is bound by sampling: add runners instead")
        if cfg.curriculum == "camrl":
            raise MtrlError("curriculum camrl adds a loss on the learner's own networks; use learners=1 with it")
        if cfg.sac.batch_size is None and cfg.sac.batch_per_task % cfg.learners:  # (a batch_size: checked at build)
            raise MtrlError(f"learners={cfg.learners} must divide sac.batch_per_task={cfg.sac.batch_per_task} (each "
                            "learner takes an equal share of every task's transitions)")
    _check_device(cfg)
    if cfg.max_episode_steps is not None and cfg.max_episode_steps <= 0:
        raise MtrlError(f"max_episode_steps must be positive, got {cfg.max_episode_steps}")
    if cfg.ppo.lr <= 0 or not 0 < cfg.ppo.gamma <= 1:
        raise MtrlError(f"ppo.lr must be > 0 and ppo.gamma in (0, 1], got lr={cfg.ppo.lr} gamma={cfg.ppo.gamma}")
    if not (cfg.ppo.kl_coeff >= 0 and cfg.ppo.kl_target > 0):  # also refuses NaN
        raise MtrlError(f"ppo.kl_coeff must be >= 0 (0: no KL penalty) and ppo.kl_target > 0, got "
                        f"kl_coeff={cfg.ppo.kl_coeff} kl_target={cfg.ppo.kl_target}")
    if cfg.algo == "mtppo" and cfg.ppo.async_rollouts and cfg.runners == 0:
        raise MtrlError("ppo.async_rollouts samples the next rollout on Ray runners while the learner updates: it "
                        "needs runners >= 1 (in-process sampling cannot run beside the update)")
    if cfg.ppo.heads == "options" and cfg.ppo.options < 2:
        raise MtrlError(f"ppo.options must be at least 2 with ppo.heads=options, got {cfg.ppo.options}")
    for key, v, ok in [("ppo.heads", cfg.ppo.heads, ("single", "multi", "ensemble", "options")),
                       ("ppo.adv_norm", cfg.ppo.adv_norm, ("batch", "task", "none")),
                       ("split", cfg.split, ("train", "test")),
                       ("reward_norm", cfg.reward_norm, ("none", "running_std", "max_return")),
                       ("obs", cfg.obs, ("flat", "image")),
                       ("sac.critic", cfg.sac.critic, ("mlp", "bronet")),
                       ("sac.critic_loss", cfg.sac.critic_loss, ("mse", "categorical")),
                       ("sac.target", cfg.sac.target, ("min", "mean")),
                       ("sac.precision", cfg.sac.precision, PRECISIONS)]:
        if v not in ok:
            raise MtrlError(f"unknown {key} {v!r}; {did_you_mean(v, ok)}valid choices: {choices(ok)}")
    from mtrl import surgery

    surgery.get(cfg.surgery, **dict(cfg.surgery_args))  # unknown name / bad parameters -> MtrlError
    heads = cfg.sac.heads if cfg.algo == "mtsac" else cfg.ppo.heads
    if heads == "ensemble" and (cfg.surgery != "mean" or cfg.diagnostics_every):
        raise MtrlError("heads=ensemble shares no parameters between tasks: per-task gradients have nothing to "
                        f"combine or compare; use surgery=mean and diagnostics_every=0 (got surgery={cfg.surgery}, "
                        f"diagnostics_every={cfg.diagnostics_every})")
    if cfg.reward_norm != "none" and cfg.demos:
        raise MtrlError("reward_norm scales the environment's reward, which imitation does not learn from; "
                        "drop reward_norm (or demos)")
    if cfg.reward_norm_v_max <= 0:
        raise MtrlError(f"reward_norm_v_max must be positive, got {cfg.reward_norm_v_max}")
    if cfg.diagnostics_every < 0:
        raise MtrlError(f"diagnostics_every must be >= 0, got {cfg.diagnostics_every}")
    if cfg.video_every < 0 or cfg.video_max_steps <= 0:
        raise MtrlError(f"video_every must be >= 0 and video_max_steps > 0, got {cfg.video_every}, {cfg.video_max_steps}")
    if cfg.eval_every < 0 or cfg.eval_episodes <= 0:
        raise MtrlError(f"eval_every must be >= 0 and eval_episodes > 0, got {cfg.eval_every}, {cfg.eval_episodes}")
    from mtrl.envs import get

    tasks = get(cfg.taskset if not cfg.tasks else "custom", list(cfg.tasks) or None).tasks(cfg.split)
    if cfg.obs == "image":
        other = [t for t in tasks if t.kind != "minigrid"]
        if other:
            raise MtrlError(f"obs: image is MiniGrid's 7x7 view through a CNN; {other[0].name!r} is a {other[0].kind} "
                            "task with no such view: use obs: flat")
        if cfg.algo != "mtppo" or cfg.ppo.heads not in ("single", "multi"):
            raise MtrlError(f"obs: image works with algo=mtppo and ppo.heads single or multi, got {cfg.algo}, "
                            f"ppo.heads={cfg.ppo.heads}")
    if cfg.task_share not in ("episodes", "steps"):
        raise MtrlError(f"task_share must be 'episodes' (weights draw each slot's next episode) or 'steps' "
                        f"(slots follow the weights, so env steps do); got {cfg.task_share!r}")
    if cfg.curriculum is not None:
        from mtrl import curriculum

        sched = curriculum.get(cfg.curriculum, [t.name for t in tasks], OmegaConf.to_container(cfg.task_graph),
                               **OmegaConf.to_container(cfg.curriculum_args))  # bad name / args / graph -> MtrlError
        if getattr(sched, "needs_task_params", False):
            if cfg.algo not in ("mtppo", "mtsac"):
                raise MtrlError(f"curriculum {cfg.curriculum!r} trains with algo=mtppo or mtsac, got {cfg.algo}")
            section = "ppo" if cfg.algo == "mtppo" else "sac"
            ok = ("ensemble", "multi") if section == "ppo" else ("ensemble",)
            from mtrl.agents.archs import heads_for

            try:  # arch=multihead implies per-task heads; a bad arch is reported by its own check below
                heads = heads_for(cfg[section].arch, cfg[section].heads)
            except (ValueError, MtrlError):
                heads = cfg[section].heads
            if heads not in ok:
                raise MtrlError(f"curriculum {cfg.curriculum!r} needs per-task parameters: set {section}.heads="
                                + " or ".join(ok) + f" (see agents/{cfg.algo}-camrl.yaml); got "
                                f"{section}.heads={cfg[section].heads}")
    if cfg.imitation is not None or cfg.demos or cfg.algo == "bc":
        from mtrl import imitation

        imitation.validate(cfg, [t.name for t in tasks])
    if cfg.algo == "mtsac":
        _validate_sac(cfg, len(tasks))
    if cfg.algo in ("mtsac", "mtppo", "bc"):
        _validate_arch(cfg, "sac" if cfg.algo == "mtsac" else "ppo", [t.name for t in tasks])


def _check_device(cfg: DictConfig) -> None:
    """``device`` names a known place, and ``cuda`` is asked only of a run that can use it. Whether
    a GPU is visible is checked where the learner is built (``mtrl eval`` of a GPU run on a
    machine without one loads it onto the CPU)."""
    from mtrl.agents import device

    name = str(cfg.device)
    if not device.is_name(name):
        raise MtrlError(f"unknown device {name!r}; {did_you_mean(name, device.DEVICES)}valid choices: "
                        f"{choices(device.DEVICES)} or cuda:N")
    why_not = device.why_not_gpu(cfg)
    if name.startswith("cuda") and why_not is not None:
        raise MtrlError(f"device={name} is not built for {why_not}; use device=cpu or auto")


def _validate_arch(cfg: DictConfig, section: str, task_names: list[str]) -> None:
    """``<section>.arch``: a known architecture, its own options, and task descriptions where it needs them."""
    from mtrl.agents import archs

    name, args = cfg[section].arch, dict(cfg[section].arch_args)
    try:
        archs.get(name)
    except MtrlError as exc:
        raise MtrlError(f"{section}.arch: {exc}") from None
    archs.check_args(name, args)
    if "descriptions" in args:
        raise MtrlError(f"{section}.arch_args.descriptions is set from the task set's descriptions; drop it")
    try:  # the option values: build a small trunk of this architecture
        extra = {"descriptions": ["a task"] * 2} if archs.get(name).needs_descriptions else {}
        archs.build(name, 4, list(cfg[section].hidden)[:1] or [8], 2, **args, **extra)
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        raise MtrlError(f"bad {section}.arch_args for {name}: {exc}") from None
    if name != "mlp" and cfg[section].heads in ("ensemble", "options"):
        raise MtrlError(f"{section}.arch={name} needs shared trunks; {section}.heads={cfg[section].heads} has its own "
                        f"networks: use {section}.arch=mlp or heads single / multi")
    if archs.get(name).needs_descriptions:
        from mtrl.envs.descriptions import descriptions

        descriptions(task_names)  # names every task without one


def _validate_sac(cfg: DictConfig, num_tasks: int) -> None:
    sac = cfg.sac
    if sac.batch_size is not None and (sac.batch_size <= 0 or sac.batch_size % num_tasks):
        raise MtrlError(f"sac.batch_size={sac.batch_size} is not a positive multiple of the {num_tasks} tasks "
                        f"of {cfg.taskset!r}; use e.g. {128 * num_tasks} (128 per task) or set sac.batch_per_task")
    for key in ("batch_per_task", "buffer_per_task", "collect_steps", "weights_every", "actor_update_freq",
                "target_update_freq"):
        if sac[key] <= 0:
            raise MtrlError(f"sac.{key} must be a positive number, got {sac[key]}")
    if sac.utd <= 0 or sac.learning_starts < 0 or not 0 < sac.tau <= 1 or sac.init_alpha <= 0:
        raise MtrlError(f"need sac.utd > 0, sac.learning_starts >= 0, 0 < sac.tau <= 1, sac.init_alpha > 0; "
                        f"got {sac.utd}, {sac.learning_starts}, {sac.tau}, {sac.init_alpha}")
    if sac.heads not in ("single", "multi", "ensemble"):
        raise MtrlError(f"unknown sac.heads {sac.heads!r}; valid choices: 'single', 'multi', 'ensemble'")
    if not 0.0 <= sac.actor_ema <= 1.0:  # also refuses NaN
        raise MtrlError(f"sac.actor_ema must be in [0, 1] (0: evaluate the actor itself), got {sac.actor_ema}")
    if not sac.alpha_min >= 0.0:  # also refuses NaN
        raise MtrlError(f"sac.alpha_min must be >= 0 (0: no floor under the temperature), got {sac.alpha_min}")
    if sac.critic_layer_norm and sac.critic == "bronet":
        raise MtrlError("sac.critic_layer_norm is for sac.critic=mlp; sac.critic=bronet has its own LayerNorms")
    if sac.critic_layer_norm and sac.heads != "ensemble" and sac.critic == "mlp":
        from mtrl.agents import archs

        if not archs.takes_layer_norm(sac.arch):
            raise MtrlError(f"sac.critic_layer_norm is built for the MLP critic trunks (arch mlp or multihead, or "
                            f"heads ensemble), not sac.arch={sac.arch!r}")


def save(cfg: DictConfig, path: Path) -> None:
    """Write the resolved config atomically."""
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg))
    tmp.replace(path)


def load(path: Path) -> DictConfig:
    """Read a run's ``config.yaml`` back into the typed schema. A run written before ``device``
    existed trained on the CPU: it keeps ``device: cpu`` (not the new default ``auto``), so
    resuming it on a machine with a GPU continues it exactly as it was."""
    data = _load_yaml(path)
    if isinstance(data, dict) and "device" not in data:
        data = {**data, "device": "cpu"}
    return _merge(OmegaConf.structured(TrainConfig), data, str(path))
