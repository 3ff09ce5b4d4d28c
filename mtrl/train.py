"""The training loop: runners -> rollout / replay -> learner -> log / eval -> checkpoint.

- On-policy (MT-PPO): every iteration each runner steps its slots ``ppo.num_steps`` times
  with the current weights, then the learner updates once.
- Off-policy (MT-SAC): runners collect ``sac.collect_steps`` vector steps per round into the
  per-task replay buffer; with Ray runners the next round is already running while the
  learner does its ``utd x collect_steps`` updates (sampling and learning overlap).

Every ``checkpoint_every`` env steps an atomic checkpoint is written that resumes exactly
(model, optimisers, temperatures, counters, RNGs, env state, episode windows, optionally the
replay buffer); every ``eval_every`` env steps a deterministic evaluation is logged.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mtrl import checkpoint, curriculum
from mtrl import config as config_mod
from mtrl.agents.archs import count_params
from mtrl.agents.device import cpu_policy, learner_device
from mtrl.buffers import PerTaskReplay
from mtrl.envs import make
from mtrl.errors import MtrlError
from mtrl.evaluate import evaluate
from mtrl.logging import EpisodeStats, Logger
from mtrl.rewards import RewardModel
from mtrl.runners import RunnerPool
from mtrl.runs import build_agent, check_learner_device, default_run_dir, env_kwargs

__all__ = ["Trainer", "build_agent", "env_kwargs", "train", "trim_eval_history"]


class Trainer:
    """Owns the pieces of one run; :meth:`run` trains until ``total_steps`` or Ctrl-C."""

    def __init__(self, cfg: DictConfig, run_dir: Path, address: str | None):
        self.cfg, self.run_dir = cfg, run_dir
        probe = make(**env_kwargs(cfg))  # builds no env until reset: only spaces and names
        self.probe = probe
        self.task_names, self.total_slots = probe.task_names, probe.total_slots
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        if cfg.runners or cfg.learners > 1:  # Ray's own log lines to the run folder, not the console
            from mtrl.runners.pool import init_ray

            init_ray(address, log_file=run_dir / "ray.log")
        self.agent = build_agent(cfg, probe, cfg.learners, address)
        self.stats = EpisodeStats(self.task_names, cfg.episode_window)
        self.step = 0
        self.rng = np.random.default_rng(cfg.seed + 777)  # replay sampling
        self.replay: PerTaskReplay | None = None
        self._update_credit = 0.0
        self._rounds = 0
        self.iterations = 0
        self._push_weights = False  # send weights in the next collection round whatever weights_every says
        self.wall_s = 0.0  # training wall-clock seconds over all sessions of this run (evaluations excluded)
        self.task_steps = np.zeros(probe.num_tasks, np.int64)  # env steps per task so far
        # The two seams of the loop: a task scheduler (curriculum) that sets the runners' task
        # weights after each iteration, and a reward model that relabels experience (imitation).
        self.curriculum = None if cfg.curriculum is None else curriculum.get(
            cfg.curriculum, self.task_names, OmegaConf.to_container(cfg.task_graph), default_seed=cfg.seed,
            **OmegaConf.to_container(cfg.curriculum_args))
        if self.curriculum is not None:
            self.curriculum.attach(self.agent)
        self.task_weights: np.ndarray | None = None  # what the runners sample tasks from (None: fixed slots)
        self.reward_model: RewardModel | None = None
        self.reward_log: dict[str, Any] = {}  # what the reward model reported this iteration
        self.report: Callable[[dict[str, Any]], None] | None = None  # progress to a sweep (Tune)
        if cfg.demos:
            from mtrl import imitation

            self.reward_model = imitation.build(cfg, probe, self.agent)
            print(f"imitation: {cfg.imitation or cfg.algo} from {cfg.demos} (the environment's reward is logged, "
                  "never learned from)", flush=True)
        if cfg.reward_norm != "none":  # config validation keeps it apart from imitation
            from mtrl.agents.reward_norm import RewardNormalizer

            gamma = cfg.ppo.gamma if self.agent.on_policy else cfg.sac.gamma
            self.reward_model = RewardNormalizer(cfg.reward_norm, len(self.task_names), self.total_slots, gamma,
                                                 cfg.reward_norm_v_max)
        if not self.agent.on_policy:
            shape = probe.single_action_space.shape
            self.replay = PerTaskReplay(probe.num_tasks, cfg.sac.buffer_per_task, probe.obs_dim, int(np.prod(shape)))
        print(f"run folder: {run_dir}  (tensorboard --logdir {run_dir})", flush=True)
        print(f"task set {probe.taskset.name}: {len(self.task_names)} tasks x {cfg.envs_per_task} envs, "
              f"obs {probe.obs_dim}, actions {probe.single_action_space}, {cfg.algo}, "
              f"{'in-process sampling' if cfg.runners == 0 else f'{cfg.runners} Ray runners'}", flush=True)
        self.param_counts = {name: count_params(net) for name, net in self.agent.networks.items()}
        arch = cfg.sac.arch if cfg.algo == "mtsac" else cfg.ppo.arch
        print(f"networks ({arch}): " + ", ".join(f"{name} {n:,} parameters ({k:,} per-task)"
                                                 for name, (n, k) in self.param_counts.items())
              + (f"; update precision {self.agent.precision}" if hasattr(self.agent, "precision") else "")
              + f"; learner on {learner_device(self.agent)}", flush=True)
        self.pool = RunnerPool(env_kwargs(cfg), self.total_slots, self.agent.policy_spec, cfg.runners, cfg.seed,
                               cfg.runner_cpus, address, cfg.runner_max_restarts, cfg.runner_restart_window)
        self.eval_env = None
        self.save_env = cfg.save_env_state
        if self.save_env is None:
            self.save_env = not any(t.kind == "metaworld" for t in probe.tasks)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return {"step": self.step, "agent": self.agent.state_dict(), "stats": self.stats.state_dict(),
                "rng": checkpoint.rng_state(), "replay_rng": self.rng.bit_generator.state,
                "update_credit": self._update_credit, "rounds": self._rounds,
                "iterations": self.iterations, "task_steps": self.task_steps.copy(), "wall_s": self.wall_s,
                "curriculum": None if self.curriculum is None else self.curriculum.state_dict(),
                "curriculum_name": self.cfg.curriculum,
                "curriculum_args": OmegaConf.to_container(self.cfg.curriculum_args),
                "task_weights": self.task_weights, "runner_restarts": self.pool.restarts,
                "reward_model": None if self.reward_model is None else self.reward_model.state_dict(),
                "next_rollout": self.pool.prefetched(),  # ppo.async_rollouts: stored, so resume stays exact
                "config": OmegaConf.to_container(self.cfg)}

    def save(self) -> Path:
        ckpt_dir = self.run_dir / "checkpoints"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        if self.replay is not None and self.cfg.sac.save_buffer:  # buffer first: a .pt implies its buffer
            self.replay.save(ckpt_dir / f"replay_{self.step:012d}.npz")
        # the env state first: a runner replaced while it is fetched counts in the state's runner_restarts
        env_state = self.pool.get_state() if self.save_env else None
        path = checkpoint.save(self.state(), ckpt_dir, self.step, self.cfg.keep_checkpoints, env_state=env_state)
        kept = {p.name.removeprefix("step_").removesuffix(".pt") for p in checkpoint.list_checkpoints(ckpt_dir)}
        for old in ckpt_dir.glob("replay_*.npz"):
            if old.name.removeprefix("replay_").removesuffix(".npz") not in kept:
                old.unlink(missing_ok=True)
        return path

    def load(self, path: Path, state: dict[str, Any] | None = None) -> None:
        """Restore from checkpoint ``path`` (``state``: its content when already read)."""
        s = checkpoint.load(path, trusted=True) if state is None else state
        self.agent.load_state_dict(s["agent"])
        self.stats.load_state_dict(s["stats"])
        self.step = s["step"]
        checkpoint.set_rng_state(s["rng"])
        self.rng.bit_generator.state = s["replay_rng"]
        self._update_credit, self._rounds = s["update_credit"], s["rounds"]
        self.iterations = s.get("iterations", 0)  # absent in checkpoints written before curricula
        self.wall_s = float(s.get("wall_s", 0.0))
        self.task_steps = np.asarray(s.get("task_steps", self.task_steps))
        if self.curriculum is not None and s.get("curriculum") is not None:
            saved = (s.get("curriculum_name"), s.get("curriculum_args"))
            now = (self.cfg.curriculum, OmegaConf.to_container(self.cfg.curriculum_args))
            if saved[0] is not None and saved != now:
                raise MtrlError(f"the run was trained with curriculum {saved[0]!r} {saved[1]}, not {now[0]!r} {now[1]}; "
                                "resume with the run's own curriculum (or start a new run)")
            self.curriculum.load_state_dict(s["curriculum"])
        if self.reward_model is not None and s.get("reward_model") is not None:
            self.reward_model.load_state_dict(s["reward_model"])
        dropped = trim_eval_history(self.run_dir, self.step)  # last: after every check that may refuse
        if dropped:
            print(f"resuming at step {self.step:,}: {dropped} evaluation line(s) logged after it moved from "
                  "eval_history.jsonl to eval_history.dropped.jsonl (that stretch is trained again)", flush=True)
        env_state = s["runners"] if s.get("runners") is not None else checkpoint.load_env(path)
        if env_state is not None:  # the first form: checkpoints written before the env-state file
            self.pool.set_state(env_state)
        else:
            print("note: the checkpoint holds no env state; episodes in progress restart", flush=True)
            if hasattr(self.reward_model, "restart_episodes"):
                self.reward_model.restart_episodes()
        self.task_weights = s.get("task_weights")
        self.pool.set_prefetched(s.get("next_rollout"))  # ppo.async_rollouts: sampled before the save
        self.pool.restarts = int(s.get("runner_restarts", 0))
        if self.task_weights is not None:  # env state may be absent (Meta-World): send them again
            self.pool.set_task_weights(self.task_weights)
        if self.replay is not None:
            buf = path.parent / f"replay_{self.step:012d}.npz"
            if buf.is_file():
                self.replay.load(buf)
            else:
                print("note: no saved replay buffer (sac.save_buffer=false); it refills before updates resume",
                      flush=True)
        self._push_weights = True  # runners (and any replacement) start from the restored policy
        print(f"resumed from {path.name} at step {self.step:,}", flush=True)

    # ------------------------------------------------------------------ iterations
    def on_policy_iteration(self) -> tuple[int, dict[str, Any], dict[str, float]]:
        n = self.cfg.ppo.num_steps
        t0 = time.time()
        # ppo.async_rollouts: the runners sample the next rollout while the learner updates on this one
        rollout = self.relabel(self.pool.sample(n, self.agent.policy_state(), prefetch=self.cfg.ppo.async_rollouts),
                               "rollout")
        t1 = time.time()
        out = {**self.agent.update(rollout, progress=self.step / self.cfg.total_steps), **self.reward_log}
        out["_task_steps"] = np.bincount(rollout["task_ids"].ravel(), minlength=len(self.task_names))
        steps = int(np.prod(rollout["task_ids"].shape))  # a restored rollout may have another num_steps
        return steps, {**out, "_episodes": rollout["episodes"]}, {
            "perf/sample_s": t1 - t0, "perf/update_s": time.time() - t1,
            "perf/runner_restarts": self.pool.restarts}

    def off_policy_iteration(self) -> tuple[int, dict[str, Any], dict[str, float]]:
        sac = self.cfg.sac
        assert self.replay is not None
        t0 = time.time()
        random_actions = self.step < sac.learning_starts
        push = self._rounds % sac.weights_every == 0 or self._push_weights
        self._push_weights = False
        handle = self.pool.collect_async(sac.collect_steps, self.agent.policy_state() if push else None,
                                         random_actions)
        self._rounds += 1
        t1 = time.time()
        out: dict[str, Any] = {}
        if len(self.replay) >= max(sac.learning_starts, 1) and np.all(self.replay.size > 0):
            self._update_credit += sac.utd * sac.collect_steps
            n_updates = int(self._update_credit)
            self._update_credit -= n_updates
            diag: dict[str, Any] = {}
            for _ in range(n_updates):
                out = self.agent.update(self.relabel(self.replay.sample(self.agent.per_task, self.rng), "batch"))
                diag.update({k: v for k, v in out.items() if k.startswith("_diagnostics")})
            out.update(diag)  # the latest diagnostics of this round, whichever update computed them
        t2 = time.time()
        data = self.relabel(self.pool.wait(handle), "collected")  # a reward normaliser reads new experience
        self.replay.add(data["task_ids"], data["obs"], data["actions"], data["rewards"], data["next_obs"],
                        data["terminated"])
        t3 = time.time()
        out.update(self.reward_log)
        out["_task_steps"] = np.bincount(data["task_ids"], minlength=len(self.task_names))
        return sac.collect_steps * self.total_slots, {**out, "_episodes": data["episodes"]}, {
            "perf/update_s": t2 - t1, "perf/sample_wait_s": (t1 - t0) + (t3 - t2),
            "perf/runner_restarts": self.pool.restarts, "replay/size": len(self.replay),
            "sac/updates": self.agent.updates}

    # ------------------------------------------------------------------ seams
    def relabel(self, data: dict[str, Any], kind: str) -> dict[str, Any]:
        """The reward seam: a reward model trains on the new experience, then rewrites ``rewards``
        before the learner sees them (the env's reward stays in the episode statistics)."""
        if self.reward_model is None:
            return data
        self.reward_log = self.reward_model.update(data, kind)
        data = self.reward_model.relabel(data, kind)
        self.reward_log[getattr(self.reward_model, "log_key", "imitation/reward")] = \
            self.reward_model.reward_per_task(data)
        return data

    def schedule(self, out: dict[str, Any], new: dict[int, np.ndarray], sampled: np.ndarray) -> dict[str, Any]:
        """The curriculum seam: per-task statistics in, task weights out to every runner.

        Returns what to log (the weights the runners sample from, and the scheduler's own values).
        """
        if self.curriculum is None:
            return {}
        T = len(self.task_names)
        loss, score = self.agent.task_stats(out)
        stats = curriculum.TaskStats(step=self.step, iteration=self.iterations, success=self.stats.per_task(1),
                                     returns=self.stats.per_task(0), episodes=self.stats.total.copy(),
                                     env_steps=self.task_steps.copy(), new=new, loss=loss, score=score,
                                     sampled=np.asarray(sampled))
        self.curriculum.update(stats)
        w = self.curriculum.weights()
        if w is not None:
            w = curriculum.check_weights(w, T, f"curriculum {self.cfg.curriculum!r}")
            if self.task_weights is None or not np.array_equal(w, self.task_weights):
                self.pool.set_task_weights(w)
                self.task_weights = w
        shown = self.task_weights if self.task_weights is not None else np.full(T, 1.0 / T)
        return {"curriculum/weight": shown, **self.curriculum.log()}

    def maybe_evaluate(self, logger: Logger, prev_step: int) -> None:
        every = self.cfg.eval_every
        if not every or self.step // every == prev_step // every:
            return
        if self.eval_env is None:
            kw = {**env_kwargs(self.cfg), "envs_per_task": 1, "seed": self.cfg.seed + 10_000}
            self.eval_env = make(**kw)
        t0 = time.time()
        res = evaluate(cpu_policy(self.agent), self.eval_env, self.cfg.eval_episodes)
        logger.scalars(self.step, {"eval/success": res["success"], "eval/return": res["return"],
                                   "perf/eval_s": time.time() - t0})
        print(f"eval at step {self.step:,}: mean success {res['mean_success']:.2f} "
              f"({self.cfg.eval_episodes} deterministic episodes per task)", flush=True)
        with open(self.run_dir / "eval_history.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, "wall_s": round(self.wall_s, 1), "mean_success": res["mean_success"],
                                "success": dict(zip(self.task_names, res["success"].tolist())),
                                "return": dict(zip(self.task_names, np.round(res["return"], 2).tolist()))}) + "\n")

    def maybe_video(self, logger: Logger, prev_step: int) -> None:
        """Every ``video_every`` env steps: checkpoint, record one episode per task, log the grid GIF."""
        every = self.cfg.video_every
        if not every or self.step // every == prev_step // every:
            return
        from mtrl.video import record

        t0 = time.time()
        path = self.save()
        res = record(self.run_dir, episodes=1, checkpoint=str(path), size=128, max_steps=self.cfg.video_max_steps,
                     fps=15)
        frames = res["grid_frames"][::2]  # 7.5 frames/s of rollout in the GIF keeps event files small
        logger.video(self.step, "video/grid", frames, fps=8)
        print(f"video at step {self.step:,}: {res['grid']} ({time.time() - t0:.0f} s)", flush=True)

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        cfg = self.cfg
        logger = Logger(self.run_dir, self.task_names, cfg.total_steps, start_step=self.step)
        logger.scalars(self.step, {f"params/{name}/{kind}": v for name, (n, k) in self.param_counts.items()
                                   for kind, v in (("total", n), ("per_task", k))})
        interrupted = False

        def on_signal(signum, frame):  # finish the current iteration, checkpoint, then stop
            nonlocal interrupted
            interrupted = True
            name = "SIGTERM" if signum == signal.SIGTERM else "interrupt"
            print(f"\n{name}: writing a checkpoint after this update (Ctrl-C again to abort)", flush=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)

        # SLURM, Kubernetes and spot pre-emption send SIGTERM: the same clean stop as Ctrl-C. Only the
        # main thread may set handlers (a Tune trial runs in a worker thread, and Tune stops it itself).
        handle = threading.current_thread() is threading.main_thread()
        old_handler = signal.signal(signal.SIGINT, on_signal) if handle else None
        old_term = signal.signal(signal.SIGTERM, on_signal) if handle else None
        iteration = self.on_policy_iteration if self.agent.on_policy else self.off_policy_iteration
        last_ckpt = self.step
        n_iter = 0
        try:
            while self.step < cfg.total_steps and not interrupted:
                t0 = time.time()
                added, out, perf = iteration()
                prev, self.step = self.step, self.step + added
                self.wall_s += time.time() - t0
                n_iter += 1
                self.iterations += 1
                sampled = out.pop("_task_steps")  # env steps per task in this iteration
                self.task_steps += sampled
                new = self.stats.add(out.pop("_episodes"))
                scheduled = self.schedule(out, new, sampled)
                for key in [k for k in out if k.startswith("_diagnostics")]:
                    logger.diagnostics(self.step, key.replace("_diagnostics", "diag", 1), out.pop(key))
                if n_iter % cfg.log_every == 0 or self.step >= cfg.total_steps:
                    logger.episodes(self.step, new)
                    for d in (scheduled, out):  # matrices (CAMRL's B, MH-AIRL's option usage) as images
                        for key in [k for k, v in d.items() if np.ndim(v) == 2]:
                            logger.matrix(self.step, key, d.pop(key))
                    logger.scalars(self.step, {**out, **perf, **scheduled,
                                               "perf/steps_per_s": added / (time.time() - t0),
                                               "success/window": self.stats.per_task(1),
                                               "episodes/total": self.stats.total})
                    logger.progress(self.step, self.stats, force=self.step >= cfg.total_steps)
                    if self.report is not None:
                        self.report({"step": self.step, "success": float(self.stats.mean_success()),
                                     "steps_per_s": added / (time.time() - t0)})
                self.maybe_evaluate(logger, prev)
                self.maybe_video(logger, prev)
                if cfg.checkpoint_every and self.step // cfg.checkpoint_every > last_ckpt // cfg.checkpoint_every:
                    self.save()
                    last_ckpt = self.step
            path = self.save()
            summary = {"step": self.step, "mean_success": self.stats.mean_success(),
                       "success": dict(zip(self.task_names, np.nan_to_num(self.stats.per_task(1)).tolist())),
                       "checkpoint": str(path)}
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
            # the training episodes' success (exploring policy), not the deterministic evaluation's
            print(f"{'stopped' if interrupted else 'done'}: step {self.step:,}, training-episode success "
                  f"{summary['mean_success']:.2f} (last {self.stats.window} per task; deterministic evaluations: "
                  f"eval_history.jsonl); checkpoint {path}; logs: tensorboard --logdir {self.run_dir}",
                  flush=True)
            if interrupted:
                print(f"continue with: mtrl train --resume {self.run_dir}", flush=True)
        finally:
            if handle:
                signal.signal(signal.SIGINT, old_handler)
                signal.signal(signal.SIGTERM, old_term)
            logger.close()
            self.pool.close()
            if hasattr(self.agent, "close"):  # data-parallel learners (Ray actors)
                self.agent.close()
            if self.eval_env is not None:
                self.eval_env.close()


def trim_eval_history(run_dir: Path, step: int) -> int:
    """Move the evaluations logged after env step ``step`` from ``RUN_DIR/eval_history.jsonl`` to
    ``RUN_DIR/eval_history.dropped.jsonl`` (appended: nothing is deleted) and return how many
    lines moved: a run resumed from a checkpoint older than its last evaluation (a hard kill
    between checkpoints, or ``--checkpoint``) trains that stretch again, and its history must not
    hold two evaluations of one step (TensorBoard's ``purge_step`` does the same for the event
    file). A line that does not parse (a write cut short by a full disk) moves too, with a
    warning. The history is replaced atomically."""
    path = Path(run_dir) / "eval_history.jsonl"
    if not path.is_file():
        return 0
    kept, dropped = [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            keep = json.loads(line)["step"] <= step
        except (ValueError, KeyError, TypeError):
            warnings.warn(f"{path}: unreadable line moved to eval_history.dropped.jsonl: {line[:80]!r}", stacklevel=2)
            keep = False
        (kept if keep else dropped).append(line)
    if dropped:
        with open(path.with_name("eval_history.dropped.jsonl"), "a") as f:
            f.write("".join(x + "\n" for x in dropped))
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(x + "\n" for x in kept))
        tmp.replace(path)
    return len(dropped)


def train(cfg: DictConfig, resume: Path | None = None, address: str | None = None,
          from_checkpoint: Path | None = None, report: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Train per ``cfg`` (or continue the run in ``resume``, from its newest intact checkpoint or
    from ``from_checkpoint``); returns the run folder. ``report`` (e.g. a Tune trial's) gets
    ``{step, success, steps_per_s}`` at every progress line."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(resume) if resume else Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    if from_checkpoint is not None and not resume:
        raise MtrlError("--checkpoint goes with --resume RUN_DIR")
    check_learner_device(cfg)  # device=cuda without a GPU: one line, before anything is written
    if from_checkpoint is not None:
        if not Path(from_checkpoint).is_file():
            raise MtrlError(f"checkpoint {from_checkpoint} does not exist; see {run_dir / 'checkpoints'}")
        latest = (Path(from_checkpoint), checkpoint.load(Path(from_checkpoint), trusted=True))
        checkpoint.set_aside_newer(run_dir / "checkpoints", int(latest[1]["step"]))
    else:  # (path, state), read once; one's own run, so a pre-manifest checkpoint is accepted
        latest = checkpoint.latest_intact(run_dir, trusted=True, with_env=True) if resume else None
    if not resume:
        if checkpoint.list_checkpoints(run_dir / "checkpoints"):
            raise MtrlError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                            "or pick another run_dir")
        run_dir.mkdir(parents=True, exist_ok=True)
    cfg.run_dir = str(run_dir)
    config_mod.save(cfg, run_dir / "config.yaml")
    trainer = Trainer(cfg, run_dir, address)
    trainer.report = report
    if latest is not None:
        trainer.load(*latest)
    trainer.run()
    return run_dir
