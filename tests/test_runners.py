"""Runners on a real local Ray cluster: same batch as in-process, merged pools, dead actors."""

import numpy as np
import pytest

from mtrl.agents import MTPPO, PPOConfig
from mtrl.envs import make
from mtrl.errors import MtrlError
from mtrl.runners import Runner, RunnerPool

pytestmark = pytest.mark.ray

ENV = dict(taskset="minigrid/MT3", envs_per_task=2, seed=3)


def _agent():
    probe = make(**ENV)
    return MTPPO(PPOConfig(), probe.obs_dim, probe.num_tasks, probe.single_action_space, seed=0), probe


def _assert_same(a, b):
    for k in a:
        if k == "episodes":
            for e in a[k]:
                np.testing.assert_array_equal(a[k][e], b[k][e])
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_ray_runner_returns_same_batch_as_in_process(ray_cluster):
    agent, probe = _agent()
    w = agent.policy_state()
    local = Runner({**ENV, "slots": list(range(probe.total_slots))}, agent.policy_spec, seed=11)
    remote = ray_cluster.remote(Runner).remote({**ENV, "slots": list(range(probe.total_slots))},
                                               agent.policy_spec, 11)
    for _ in range(2):  # two consecutive rollouts, weights through the object store
        a = local.sample(40, w)
        b = ray_cluster.get(remote.sample.remote(40, ray_cluster.put(w)))
        _assert_same(a, b)
    assert a["obs"].shape == (40, 6, probe.obs_dim)


def test_pool_of_two_ray_runners_covers_all_slots(ray_cluster):
    agent, probe = _agent()
    pool = RunnerPool(ENV, probe.total_slots, agent.policy_spec, runners=2, seed=0)
    out = pool.sample(30, agent.policy_state())
    assert out["obs"].shape == (30, 6, probe.obs_dim)
    assert sorted(out["task_ids"][0].tolist()) == [0, 0, 1, 1, 2, 2]
    pool.set_task_weights([1.0, 0.0, 0.0])
    states = pool.get_state()
    assert len(states) == 2
    pool.close()


def test_state_roundtrip_continues_identically(ray_cluster):
    agent, probe = _agent()
    w = agent.policy_state()
    r1 = Runner({**ENV, "slots": [0, 1, 2]}, agent.policy_spec, seed=5)
    r1.sample(17, w)
    blob = r1.get_state()
    nxt = r1.sample(25, w)
    r2 = Runner({**ENV, "slots": [0, 1, 2]}, agent.policy_spec, seed=99)
    r2.set_state(blob)
    _assert_same(nxt, r2.sample(25, w))


def test_dead_sampler_is_replaced_and_too_many_deaths_stop_the_run(ray_cluster):
    agent, probe = _agent()
    pool = RunnerPool(ENV, probe.total_slots, agent.policy_spec, runners=2, seed=0, max_restarts=2)
    pool.set_task_weights(np.array([0.0, 0.0, 1.0]))
    ray_cluster.kill(pool.runners[0])
    batch = pool.sample(5, agent.policy_state())
    assert batch["obs"].shape[:2] == (5, probe.total_slots) and pool.restarts == 1
    weights = ray_cluster.get(pool.runners[0].__ray_call__.remote(lambda runner: runner.env._weights))
    np.testing.assert_array_equal(weights, [0.0, 0.0, 1.0])  # the replacement got the task weights
    ray_cluster.kill(pool.runners[1])
    handle = pool.collect_async(4, None)  # no weights in the call: the replacement gets the newest ones
    assert len(pool.wait(handle)["task_ids"]) == 4 * probe.total_slots and pool.restarts == 2
    ray_cluster.kill(pool.runners[0])
    with pytest.raises(MtrlError, match="3 sampler actors died within 600 s.*--resume"):
        pool.sample(5, agent.policy_state())
    pool.close()


def test_training_run_survives_a_killed_runner(ray_cluster, tmp_path, monkeypatch):
    from mtrl import checkpoint
    from mtrl.config import build_config
    from mtrl.train import Trainer, train

    plain = Trainer.on_policy_iteration

    def kill_at_third(self):
        if self.iterations == 2:
            ray_cluster.kill(self.pool.runners[1])
        return plain(self)

    monkeypatch.setattr(Trainer, "on_policy_iteration", kill_at_third)
    run = train(build_config([], ["taskset=minigrid/MT3", "envs_per_task=2", "ppo.num_steps=32", "runners=2",
                                  "total_steps=960", "log_every=1", f"run_dir={tmp_path / 'r'}"]))
    state = checkpoint.load(checkpoint.latest(run))
    assert state["step"] == 960 and state["task_steps"].sum() == 960 and state["runner_restarts"] == 1


def test_too_many_runners_is_a_clear_error(ray_cluster):
    agent, probe = _agent()
    with pytest.raises(MtrlError, match="needs 4 CPUs"):
        RunnerPool(ENV, probe.total_slots, agent.policy_spec, runners=4, seed=0)
    with pytest.raises(MtrlError, match="more than the 6 env slots"):
        RunnerPool(ENV, probe.total_slots, agent.policy_spec, runners=7, seed=0)


def test_off_policy_collection_on_ray_matches_in_process(ray_cluster):
    from mtrl.agents import MTSAC, SACConfig

    kw = dict(taskset="metaworld/MT1:reach-v3", envs_per_task=2, seed=1, max_episode_steps=20)
    probe = make(**kw)
    agent = MTSAC(SACConfig(hidden=[16]), probe.obs_dim, probe.num_tasks, probe.single_action_space)
    local = RunnerPool(kw, probe.total_slots, agent.policy_spec, runners=0, seed=4)
    remote = RunnerPool(kw, probe.total_slots, agent.policy_spec, runners=1, seed=4)
    w = agent.policy_state()
    a = local.wait(local.collect_async(30, w))
    handle = remote.collect_async(30, w)  # runs while the caller is free to update
    b = remote.wait(handle)
    _assert_same(a, b)
    assert a["obs"].shape == (60, probe.obs_dim) and len(a["episodes"]["r"]) == 2  # 20-step episodes
    ended = np.flatnonzero(np.arange(60) // 2 == 19)  # rows of step 20: both slots end their episode
    # next_obs is the episode's real last observation, not the next episode's first one
    assert not np.allclose(a["next_obs"][ended], a["obs"][ended + 2])
    np.testing.assert_array_equal(a["next_obs"][:38], a["obs"][2:40])  # within an episode: s' = next s
    assert np.all(a["terminated"] == 0)  # time-limit truncation is not termination
    local.close()
    remote.close()


def test_a_temporarily_unavailable_runner_is_asked_again_before_it_is_replaced(monkeypatch):
    """``ActorUnavailableError`` (a network blip, a restarting actor) is not a death: the same
    actor is asked again; only one that stays away is replaced."""
    import ray
    import ray.exceptions

    from mtrl.runners.pool import Calls

    class Method:
        def __init__(self, runner):
            self.runner = runner

        def remote(self, *args):
            return (self.runner, args)

    class FakeActor:
        def __init__(self, name):
            self.name = name
            self.sample = Method(self)

    kw = dict(taskset="minigrid/MT3", envs_per_task=1, seed=0)
    probe = make(**kw)
    spec = MTPPO(PPOConfig(), probe.obs_dim, probe.num_tasks, probe.single_action_space).policy_spec
    pool = RunnerPool(kw, 3, spec, runners=0)  # in-process; then made to look remote
    pool.remote, pool.runners = True, [FakeActor("a")]
    answers = {"a": ["unavailable", "unavailable", "ok-a"], "b": ["ok-b"]}
    monkeypatch.setattr("time.sleep", lambda s: None)

    def fake_get(future):
        runner, _ = future
        reply = answers[runner.name].pop(0)
        if reply == "unavailable":
            raise ray.exceptions.ActorUnavailableError("node unreachable", None)
        return reply

    monkeypatch.setattr(ray, "get", fake_get)
    assert pool._finish(Calls("sample", [(8,)], [(pool.runners[0], (8,))], list(pool.runners))) == ["ok-a"]
    assert pool.restarts == 0  # answered on the third ask: never replaced

    replaced = []
    monkeypatch.setattr(pool, "_replace", lambda i, exc: (replaced.append(type(exc).__name__),
                                                          pool.runners.__setitem__(i, FakeActor("b"))))
    answers["a"] = ["unavailable"] * 4
    assert pool._finish(Calls("sample", [(8,)], [(pool.runners[0], (8,))], list(pool.runners))) == ["ok-b"]
    assert replaced == ["ActorUnavailableError"]  # away for 4 asks (> 3 retries): replaced once


ASYNC = ["taskset=minigrid/MT3", "envs_per_task=2", "ppo.num_steps=32", "runners=1", "ppo.async_rollouts=true",
         "checkpoint_every=192", "log_every=100"]


def test_async_rollouts_are_one_update_stale_and_resume_exactly(ray_cluster, tmp_path, monkeypatch):
    """ppo.async_rollouts: the rollout of iteration k+1 is sampled (on the runner, during update k)
    from the weights before update k; a checkpoint stores the rollout in flight, so a resumed run
    takes the same updates as an uninterrupted one."""
    import torch

    from mtrl import checkpoint
    from mtrl.config import build_config
    from mtrl.train import train

    pushed, updated = [], []
    plain_start, plain_update = RunnerPool._start, MTPPO.update

    def spy_start(self, method, *args):
        if method == "sample":
            pushed.append({k: v.clone() for k, v in ray_cluster.get(args[1][0]).items()})
        return plain_start(self, method, *args)

    def spy_update(self, rollout, progress=0.0):
        updated.append({k: v.detach().clone() for k, v in self.net.state_dict().items()})  # weights before it
        return plain_update(self, rollout, progress)

    monkeypatch.setattr(RunnerPool, "_start", spy_start)
    monkeypatch.setattr(MTPPO, "update", spy_update)
    full = train(build_config([], [*ASYNC, "total_steps=768", f"run_dir={tmp_path / 'full'}"]))
    assert len(updated) == 4 and len(pushed) == 5  # the first rollout waited for, then one in flight per update
    for k in range(4):  # rollout k+1 was started with the weights update k began from
        assert all(torch.equal(pushed[k + 1][n], updated[k][n]) for n in updated[k])
    assert not all(torch.equal(pushed[2][n], updated[2][n]) for n in updated[2])  # so: stale by one update
    monkeypatch.undo()

    part = train(build_config([], [*ASYNC, "total_steps=384", f"run_dir={tmp_path / 'part'}"]))
    assert checkpoint.load(checkpoint.latest(part))["next_rollout"] is not None
    train(build_config([], ["total_steps=768"], base=build_config([], [*ASYNC, f"run_dir={part}"])), resume=part)
    pa = checkpoint.load(checkpoint.latest(full))["agent"]["net"]
    pb = checkpoint.load(checkpoint.latest(part))["agent"]["net"]
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k


def test_async_rollouts_without_ray_runners_is_a_clear_error():
    from mtrl.config import build_config

    with pytest.raises(MtrlError, match="ppo.async_rollouts .* needs runners >= 1"):
        build_config([], ["taskset=minigrid/MT3", "ppo.async_rollouts=true", "runners=0"])


def test_a_runner_dying_under_an_async_rollout_is_replaced_once(ray_cluster, tmp_path, monkeypatch):
    """The runner dies while the next rollout is in flight; the curriculum's set_task_weights meets
    the death first and replaces it; the rollout in flight then goes to the replacement instead of
    replacing it a second time (one restart counted)."""
    from mtrl import checkpoint
    from mtrl.config import build_config
    from mtrl.train import Trainer, train

    plain = Trainer.on_policy_iteration

    def kill_after_second(self):
        out = plain(self)
        if self.iterations == 1:  # the third rollout is in flight on the runner
            ray_cluster.kill(self.pool.runners[0])
        return out

    monkeypatch.setattr(Trainer, "on_policy_iteration", kill_after_second)
    run = train(build_config(["envs/minigrid-mt3.yaml", "agents/mtppo-success.yaml"], [*ASYNC, "runners=2", "total_steps=960",
                                                             f"run_dir={tmp_path / 'r'}"]))
    state = checkpoint.load(checkpoint.latest(run))
    assert state["step"] == 960 and state["runner_restarts"] == 1
