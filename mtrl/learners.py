"""``learners: N``: data-parallel MT-SAC learners, one Ray actor each, joined by ``torch.distributed``.

Each learner holds a full replica of the agent (same seed, so the same initial weights) and
updates on its share of every batch: ``per_task / N`` transitions of each task. Before each
optimiser step the learners average, with one all-reduce over ``torch.distributed`` (gloo on
CPUs; NCCL would serve GPUs), the gradients of the plain path or, with gradient surgery, the
per-task gradient blocks and task losses *before* aggregation, so every aggregator sees the
global per-task gradients (the mean over shares of each share's per-task mean gradient is the
per-task mean gradient of the whole batch). Every learner therefore takes the same step and
the replicas stay equal; learner 0 answers for the weights. The policy noise of the update is
drawn once for the whole batch and shipped with it, so N learners on the shares match one
learner on the whole batch (to float tolerance: tested).

Why Ray actors with plain ``torch.distributed`` rather than Ray Train's ``TorchTrainer``: the
learner is stepped by mtrl's own loop (one ``update`` per call, between collection rounds),
not a training function that owns the loop; TorchTrainer would own the loop and the
checkpointing that mtrl's ``Trainer`` already does.
"""

from __future__ import annotations

import socket
from typing import Any

import numpy as np
import torch

from mtrl.errors import MtrlError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


class _Learner:
    """One data-parallel learner (a Ray actor): an agent replica that all-reduces before stepping."""

    def __init__(self, make: tuple, threads: int):
        torch.set_num_threads(max(threads, 1))
        cls, args, kwargs = make
        self.agent = cls(*args, **kwargs)

    def address(self) -> tuple[str, int]:
        import ray

        return ray.util.get_node_ip_address(), _free_port()

    def join(self, rank: int, world: int, host: str, port: int, timeout_s: float) -> None:
        from datetime import timedelta

        import torch.distributed as dist

        # the timeout bounds every collective: a learner that failed or died makes the others fail
        # after it instead of waiting on the all-reduce forever
        dist.init_process_group("gloo", init_method=f"tcp://{host}:{port}", rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
        self.world = world

        def sync(tensors: list[torch.Tensor]) -> None:
            flat = torch.cat([t.reshape(-1) for t in tensors])
            dist.all_reduce(flat)
            flat /= world
            off = 0
            for t in tensors:
                t.copy_(flat[off:off + t.numel()].view_as(t))
                off += t.numel()

        self.agent.set_sync(sync)

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        return self.agent.update(batch)

    def policy_state(self) -> dict[str, torch.Tensor]:
        return self.agent.policy_state()

    def state_dict(self) -> dict[str, Any]:
        return self.agent.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state)


class LearnerGroup:
    """N data-parallel MT-SAC learners behind the agent interface the ``Trainer`` uses.

    A local replica (``local``) answers for the spec, the networks and the policy used for
    evaluation; its weights are refreshed from learner 0 whenever the runners' weights are."""

    on_policy = False

    def __init__(self, cls: type, section_cfg: Any, obs_dim: int, num_tasks: int, action_space: Any, n: int,
                 seed: int = 0, address: str | None = None, learner_cpus: float = 1.0, timeout_s: float = 120.0,
                 **kwargs: Any):
        import copy

        import ray

        from mtrl.runners.pool import init_ray

        self.local = cls(section_cfg, obs_dim, num_tasks, action_space, seed=seed, **kwargs)
        self.per_task, self.n = self.local.per_task, n
        if self.per_task % n:
            raise MtrlError(f"learners={n} must divide the {self.per_task} transitions per task of a batch "
                            "(sac.batch_per_task)")
        share = copy.deepcopy(section_cfg)
        share.batch_size = self.per_task // n * num_tasks
        share.batch_per_task = self.per_task // n
        init_ray(address)
        make = (cls, (share, obs_dim, num_tasks, action_space), {"seed": seed, **kwargs})
        actor = ray.remote(num_cpus=learner_cpus)(_Learner)
        self.learners = [actor.remote(make, int(max(learner_cpus, 1))) for _ in range(n)]
        host, port = ray.get(self.learners[0].address.remote())
        self._get([a.join.remote(i, n, host, port, timeout_s) for i, a in enumerate(self.learners)])
        self.gen = np.random.default_rng(seed + 31337)  # the policy noise of each update, for all shares
        self.name, self.cfg, self.num_tasks = self.local.name, self.local.cfg, num_tasks
        self.policy_spec = self.local.policy_spec
        self.updates = 0

    @property
    def policy(self):
        """The local replica's policy with learner 0's current weights (evaluation, videos)."""
        self.policy_state()
        return self.local.policy

    def _get(self, futures: list) -> list:
        """All learners' answers; the first failure stops the group with one clear error (the
        other learners then fail their pending all-reduce within the timeout)."""
        import ray

        pending = list(futures)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done[0])
            except ray.exceptions.RayError as exc:
                self.close()
                raise MtrlError(f"a data-parallel learner failed ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                                "the last checkpoint is intact: continue with `mtrl train --resume RUN_DIR`") from None
        return ray.get(futures)

    @property
    def networks(self) -> dict[str, torch.nn.Module]:
        return self.local.networks

    def shares(self, batch: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """The task-major batch ``[T * per_task]`` cut into N shares of ``per_task / N`` rows per task,
        with the policy noise of the whole batch drawn here."""
        T, m = self.num_tasks, self.per_task // self.n
        A = self.local.act_dim
        batch = {**batch, "eps_next": self.gen.standard_normal((T * self.per_task, A), dtype=np.float32),
                 "eps": self.gen.standard_normal((T * self.per_task, A), dtype=np.float32)}
        out = []
        for i in range(self.n):
            out.append({k: v.reshape(T, self.per_task, *v.shape[1:])[:, i * m:(i + 1) * m].reshape(T * m, *v.shape[1:])
                        for k, v in batch.items()})
        return out

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:

        outs = self._get([a.update.remote(s) for a, s in zip(self.learners, self.shares(batch))])
        self.updates += 1
        return outs[0]  # losses were averaged over the learners; the rest is learner 0's share

    def policy_state(self) -> dict[str, torch.Tensor]:

        weights = self._get([self.learners[0].policy_state.remote()])[0]
        self.local.policy.load_state_dict(weights)
        return weights

    def state_dict(self) -> dict[str, Any]:

        return {**self._get([self.learners[0].state_dict.remote()])[0], "group_gen": self.gen.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:

        self._get([a.load_state_dict.remote(state) for a in self.learners])
        self.local.load_state_dict({k: v for k, v in state.items() if k != "group_gen"})
        self.updates = int(state.get("updates", 0))
        if "group_gen" in state:
            self.gen.bit_generator.state = state["group_gen"]
        else:
            import warnings

            warnings.warn(f"resuming a one-learner run with learners={self.n}: the policy noise now comes from the "
                          "group's generator, so the run does not continue exactly", stacklevel=2)

    def task_stats(self, out: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return self.local.task_stats(out)

    def close(self) -> None:
        import ray

        for a in self.learners:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
