"""A pool of runners: in-process (``runners: 0``) or Ray actors (``runners: N``).

The T x envs_per_task global env slots are split into contiguous blocks, one per runner.
Weights go to Ray runners through the object store (one ``ray.put`` per update, shared by
all runners); rollouts come back and are concatenated along the env axis.

A Ray runner that dies (its process killed, its node pre-empted) is replaced by a new actor on
the same env slots with the latest weights and task weights, and the call it was serving is
run again on the replacement, so the iteration gets its full batch. Episodes in progress on
that runner restart. ``max_restarts`` restarts within ``restart_window`` seconds stop the run
with a clear message instead of looping (RLlib's env runners behave the same way).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtrl.errors import MtrlError
from mtrl.runners.runner import Runner, merge_rollouts, merge_transitions


def init_ray(address: str | None = None, num_cpus: int | None = None, log_file: Path | None = None) -> None:
    """Start a local Ray cluster (``address=None``) or join one (``"auto"`` or ``host:port``).

    ``log_file``: Ray's own log lines (start-up warnings, worker output forwarded to the driver)
    go to that file instead of the console, which keeps mtrl's progress lines."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    if address not in (None, "auto", "local"):
        _check_reachable(address)
    if log_file is not None:
        _log_ray_to(Path(log_file))
    try:
        # address="local" always starts a fresh cluster: without it Ray would try to join the
        # cluster named in /tmp/ray/ray_current_cluster, which may be a dead one.
        ray.init(address=address or "local", num_cpus=None if address else num_cpus, include_dashboard=False,
                 configure_logging=log_file is None, logging_level="warning", log_to_driver=True)
    except ConnectionError as exc:
        raise MtrlError(f"cannot join Ray cluster at {address!r}: {exc}; start one with `ray start --head` "
                        "or leave --address out for a local cluster") from None


def _is_ray(record) -> bool:
    return record.name == "ray" or record.name.startswith("ray.")


def _log_ray_to(log_file: Path) -> None:
    """Records of the ``ray`` loggers to ``log_file``; every other logger's warnings still reach
    stderr as Python's last-resort handler would print them. (``ray.init(configure_logging=
    False)`` clears the ``ray`` logger's own handlers, so the file handler sits on the root
    logger and ``ray`` propagates to it.)"""
    import logging

    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(log_file)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s -- %(message)s"))
    to_file.addFilter(_is_ray)
    others = logging.StreamHandler()
    others.setLevel(logging.WARNING)
    others.addFilter(lambda r: not _is_ray(r))
    root = logging.getLogger()
    root.addHandler(to_file)
    root.addHandler(others)
    ray_logger = logging.getLogger("ray")
    ray_logger.setLevel(logging.INFO)
    ray_logger.propagate = True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (Ray itself retries for minutes) when nothing listens at ``host:port``."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise MtrlError(f"--address must be 'auto' or host:port, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise MtrlError(f"cannot reach a Ray cluster at {address} ({exc}); start one with `ray start --head` "
                        "or leave --address out for a local cluster") from None


@dataclass
class Calls:
    """Calls started on every runner: the method, each runner's arguments, (Ray) futures and the
    actors they went to (a runner replaced meanwhile, by another call, is asked again, not replaced
    a second time)."""

    method: str
    args: list[tuple]
    results: list
    actors: list


class RunnerPool:
    """Runners over one task set, behind one interface whatever their number and kind.

    Args:
        env_kwargs: keyword arguments of :func:`mtrl.envs.make` (without ``slots``).
        total_slots: T x envs_per_task.
        policy_spec: policy network arguments.
        runners: 0 = one in-process runner; N = N Ray actors.
        seed: base seed (runner i samples actions with ``seed * 1000 + i``).
        runner_cpus: CPUs each Ray actor reserves.
        address: Ray address to join (None: local cluster).
        max_restarts: dead Ray runners replaced within ``restart_window`` seconds before the run stops.
    """

    def __init__(self, env_kwargs: dict[str, Any], total_slots: int, policy_spec: dict[str, Any],
                 runners: int = 0, seed: int = 0, runner_cpus: float = 1.0, address: str | None = None,
                 max_restarts: int = 5, restart_window: float = 600.0):
        if runners < 0:
            raise MtrlError(f"runners must be >= 0, got {runners}")
        n = max(runners, 1)
        if n > total_slots:
            raise MtrlError(f"runners={runners} is more than the {total_slots} env slots; "
                            "lower runners or raise envs_per_task")
        blocks = np.array_split(np.arange(total_slots), n)
        self.remote = runners > 0
        self.restarts = 0  # runners replaced so far
        self._restart_times: list[float] = []
        self.max_restarts, self.restart_window = max_restarts, restart_window
        self.unavailable_retries = 3  # a temporarily unavailable actor is asked again this often before it is replaced
        self._last_weights = None  # the newest weights sent (a replacement gets them)
        self._task_weights = None
        self._prefetched: Calls | dict[str, Any] | None = None  # sample(prefetch=True): the next rollout
        if not self.remote:
            self.runners = [Runner({**env_kwargs, "slots": blocks[0].tolist()}, policy_spec, seed * 1000)]
            return
        import ray

        init_ray(address)
        have = ray.cluster_resources().get("CPU", 0)
        if runners * runner_cpus > have:
            raise MtrlError(f"runners={runners} x runner_cpus={runner_cpus} needs {runners * runner_cpus:g} CPUs "
                            f"but the Ray cluster has {have:g}; lower runners or set runner_cpus=0.5")
        self._actor = ray.remote(num_cpus=runner_cpus)(Runner)
        self._spawn = [({**env_kwargs, "slots": b.tolist()}, policy_spec, seed * 1000 + i) for i, b in enumerate(blocks)]
        self.runners = [self._actor.remote(*args) for args in self._spawn]

    def _start(self, method: str, *args_per_runner: list) -> Calls:
        """Call ``method`` on every runner: results (in-process) or Ray futures."""
        args = [tuple(a[i] for a in args_per_runner) for i in range(len(self.runners))]
        if not self.remote:
            return Calls(method, args, [getattr(r, method)(*a) for r, a in zip(self.runners, args)], list(self.runners))
        return Calls(method, args, [getattr(r, method).remote(*a) for r, a in zip(self.runners, args)],
                     list(self.runners))

    def _finish(self, calls: Calls) -> list:
        if not self.remote:
            return calls.results
        import ray

        out = []
        for i, future in enumerate(calls.results):
            tries = 0
            while True:
                try:
                    out.append(ray.get(future))
                    break
                except ray.exceptions.ActorUnavailableError as exc:
                    # Transient (the actor's node is unreachable for a moment, or it is restarting):
                    # ask the same actor again with a growing pause; replace it only if it stays away.
                    # The first call may still have run: its envs then stepped one extra rollout, whose
                    # transitions are dropped (episodes go on; nothing is counted twice).
                    tries += 1
                    if tries > self.unavailable_retries:
                        self._renew(calls, i, exc)
                        tries = 0
                    else:
                        print(f"runner {i} unavailable ({exc.__class__.__name__}); asking again "
                              f"({tries}/{self.unavailable_retries})", flush=True)
                        time.sleep(min(2.0 ** tries, 10.0))
                except ray.exceptions.RayActorError as exc:
                    self._renew(calls, i, exc)  # the replacement gets the newest weights first (calls run in order)
                future = getattr(self.runners[i], calls.method).remote(*calls.args[i])
        return out

    def _renew(self, calls: Calls, i: int, exc: Exception) -> None:
        """Replace dead runner ``i`` for ``calls``, unless a call in between (e.g. set_task_weights
        while a prefetched rollout is in flight) met the death first and replaced it already."""
        if self.runners[i] is calls.actors[i]:
            self._replace(i, exc)
        calls.actors[i] = self.runners[i]

    def _replace(self, i: int, exc: Exception) -> None:
        """Start a new actor for dead runner ``i`` with the newest weights and task weights."""
        now = time.time()
        self._restart_times = [t for t in self._restart_times if now - t < self.restart_window] + [now]
        if len(self._restart_times) > self.max_restarts:
            raise MtrlError(f"{len(self._restart_times)} sampler actors died within {self.restart_window:g} s "
                            f"(last: runner {i}, {type(exc).__name__}); stopping. The last checkpoint is intact: "
                            "continue with `mtrl train --resume RUN_DIR` (raise runner_max_restarts to tolerate more)")
        self.restarts += 1
        env_kwargs, spec, seed = self._spawn[i]
        env_kwargs = {**env_kwargs, "seed": env_kwargs.get("seed", 0) + 7919 * self.restarts}  # fresh episodes
        print(f"runner {i} died ({type(exc).__name__}); replacing it (restart {self.restarts})", flush=True)
        import ray

        try:  # free its CPUs / placement-group bundle (an unreachable actor may still hold them)
            ray.kill(self.runners[i], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.runners[i] = self._actor.remote(env_kwargs, spec, seed + 100_000 * self.restarts)
        if self._last_weights is not None:
            self.runners[i].set_weights.remote(self._last_weights)
        if self._task_weights is not None:
            self.runners[i].set_task_weights.remote(self._task_weights)

    def _call(self, method: str, *args_per_runner: list) -> list:
        return self._finish(self._start(method, *args_per_runner))

    def _put(self, weights: dict | None):
        if self.remote and weights is not None:
            import ray

            self._last_weights = ray.put(weights)  # one copy in the object store, read by every runner
            return self._last_weights
        return weights

    def collect_async(self, num_steps: int, weights: dict | None, random_actions: bool = False) -> Calls:
        """Start an off-policy collection round; Ray runners keep stepping while the caller
        trains. Pass the handle to :meth:`wait`. In-process, the round runs right here."""
        n = len(self.runners)
        return self._start("collect", [num_steps] * n, [self._put(weights)] * n, [random_actions] * n)

    def wait(self, handle: Calls) -> dict[str, Any]:
        """Transitions of a round started by :meth:`collect_async`, merged over runners."""
        return merge_transitions(self._finish(handle))

    def sample(self, num_steps: int, weights: dict | None, prefetch: bool = False) -> dict[str, Any]:
        """One rollout of ``num_steps`` per slot from every runner, merged along the env axis.

        A rollout prefetched by the previous call (or restored with :meth:`set_prefetched`) is
        returned instead of a new one. ``prefetch``: the runners then start the next rollout with
        ``weights`` right away, so Ray runners sample it while the caller updates on this one
        (MT-PPO's ``ppo.async_rollouts``: each rollout comes from the policy one update older)."""
        pending, self._prefetched = self._prefetched, None
        if pending is None:
            data = merge_rollouts(self._call("sample", *self._sample_args(num_steps, weights)))
        else:
            data = pending if isinstance(pending, dict) else merge_rollouts(self._finish(pending))
        if prefetch:
            self._prefetched = self._start("sample", *self._sample_args(num_steps, weights))
        return data

    def _sample_args(self, num_steps: int, weights: dict | None) -> tuple[list, list]:
        n = len(self.runners)
        return [num_steps] * n, [self._put(weights)] * n

    def prefetched(self) -> dict[str, Any] | None:
        """The prefetched rollout (waited for if still in flight), for a checkpoint; None if none."""
        if isinstance(self._prefetched, Calls):
            self._prefetched = merge_rollouts(self._finish(self._prefetched))
        return self._prefetched

    def set_prefetched(self, rollout: dict[str, Any] | None) -> None:
        """Restore a checkpoint's prefetched rollout: the next :meth:`sample` returns it."""
        self._prefetched = rollout

    def set_task_weights(self, weights) -> None:
        self._task_weights = weights
        self._call("set_task_weights", [weights] * len(self.runners))

    def get_state(self) -> list[bytes]:
        """The runners' env state, after any prefetched rollout (waited for: it belongs to it)."""
        self.prefetched()
        return self._call("get_state")

    def set_state(self, states: list[bytes]) -> None:
        if len(states) != len(self.runners):
            raise MtrlError(f"checkpoint holds {len(states)} runner states but the run has {len(self.runners)} runners; "
                            "resume with the same `runners` value")
        self._call("set_state", list(states))

    def close(self) -> None:
        if self.remote:
            import ray

            for r in self.runners:
                ray.kill(r)
        else:
            for r in self.runners:
                r.close()
