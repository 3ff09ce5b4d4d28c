"""A pool of runners: in-process (``runners: 0``) or Ray actors (``runners: N``).

The T x envs_per_task global env slots are split into contiguous blocks, one per runner.
Weights go to Ray runners through the object store (one ``ray.put`` per update, shared by
all runners); rollouts come back and are concatenated along the env axis.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mtrl.errors import MtrlError
from mtrl.runners.runner import Runner, merge_rollouts, merge_transitions


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start a local Ray cluster (``address=None``) or join one (``"auto"`` or ``host:port``)."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    if address not in (None, "auto", "local"):
        _check_reachable(address)
    try:
        # address="local" always starts a fresh cluster: without it Ray would try to join the
        # cluster named in /tmp/ray/ray_current_cluster, which may be a dead one.
        ray.init(address=address or "local", num_cpus=None if address else num_cpus, include_dashboard=False,
                 configure_logging=True, logging_level="warning", log_to_driver=True)
    except ConnectionError as exc:
        raise MtrlError(f"cannot join Ray cluster at {address!r}: {exc}; start one with `ray start --head` "
                        "or leave --address out for a local cluster") from None


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
    """

    def __init__(self, env_kwargs: dict[str, Any], total_slots: int, policy_spec: dict[str, Any],
                 runners: int = 0, seed: int = 0, runner_cpus: float = 1.0, address: str | None = None):
        if runners < 0:
            raise MtrlError(f"runners must be >= 0, got {runners}")
        n = max(runners, 1)
        if n > total_slots:
            raise MtrlError(f"runners={runners} is more than the {total_slots} env slots; "
                            "lower runners or raise envs_per_task")
        blocks = np.array_split(np.arange(total_slots), n)
        self.remote = runners > 0
        self._weights_ref = None
        if not self.remote:
            self.runners = [Runner({**env_kwargs, "slots": blocks[0].tolist()}, policy_spec, seed * 1000)]
            return
        import ray

        init_ray(address)
        have = ray.cluster_resources().get("CPU", 0)
        if runners * runner_cpus > have:
            raise MtrlError(f"runners={runners} x runner_cpus={runner_cpus} needs {runners * runner_cpus:g} CPUs "
                            f"but the Ray cluster has {have:g}; lower runners or set runner_cpus=0.5")
        actor = ray.remote(num_cpus=runner_cpus)(Runner)
        self.runners = [actor.remote({**env_kwargs, "slots": b.tolist()}, policy_spec, seed * 1000 + i)
                        for i, b in enumerate(blocks)]

    def _start(self, method: str, *args_per_runner: list) -> list:
        """Call ``method`` on every runner: results (in-process) or Ray futures."""
        if not self.remote:
            return [getattr(r, method)(*(a[i] for a in args_per_runner)) for i, r in enumerate(self.runners)]
        return [getattr(r, method).remote(*(a[i] for a in args_per_runner)) for i, r in enumerate(self.runners)]

    def _finish(self, started: list) -> list:
        if not self.remote:
            return started
        import ray

        try:
            return ray.get(started)
        except ray.exceptions.RayActorError as exc:
            raise MtrlError(f"a sampler actor died ({type(exc).__name__}); the last checkpoint is intact: "
                            "continue with `mtrl train --resume RUN_DIR`") from None

    def _call(self, method: str, *args_per_runner: list) -> list:
        return self._finish(self._start(method, *args_per_runner))

    def _put(self, weights: dict | None):
        if self.remote and weights is not None:
            import ray

            return ray.put(weights)  # one copy in the object store, read by every runner
        return weights

    def collect_async(self, num_steps: int, weights: dict | None, random_actions: bool = False) -> list:
        """Start an off-policy collection round; Ray runners keep stepping while the caller
        trains. Pass the handle to :meth:`wait`. In-process, the round runs right here."""
        n = len(self.runners)
        return self._start("collect", [num_steps] * n, [self._put(weights)] * n, [random_actions] * n)

    def wait(self, handle: list) -> dict[str, Any]:
        """Transitions of a round started by :meth:`collect_async`, merged over runners."""
        return merge_transitions(self._finish(handle))

    def sample(self, num_steps: int, weights: dict | None) -> dict[str, Any]:
        """One rollout of ``num_steps`` per slot from every runner, merged along the env axis."""
        n = len(self.runners)
        return merge_rollouts(self._call("sample", [num_steps] * n, [self._put(weights)] * n))

    def set_task_weights(self, weights) -> None:
        self._call("set_task_weights", [weights] * len(self.runners))

    def get_state(self) -> list[bytes]:
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
