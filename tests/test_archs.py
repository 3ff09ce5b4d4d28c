"""Multi-task network architectures: shapes, task routing, the equalities each reduces to, their use
in MT-SAC and MT-PPO with gradient surgery, and bad input."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from mtrl.agents import MTPPO, MTSAC, PPOConfig, SACConfig, archs, build_policy
from mtrl.agents.archs import MLPTrunk, gram_schmidt
from mtrl.config import build_config
from mtrl.envs.descriptions import descriptions, embed
from mtrl.errors import MtrlError
from mtrl.surgery import get as get_surgery
from mtrl.surgery.apply import SurgeryStep, task_specific_names

T, D = 3, 10
DESC = ["reach the gripper to a goal", "press the button down", "pull the drawer open"]
BOX = gym.spaces.Box(-1, 1, (4,), np.float32)


def _build(name, hidden=(32, 32), **kw):
    if name == "care":
        kw.setdefault("descriptions", DESC)
    torch.manual_seed(0)
    return archs.build(name, D, list(hidden), T, **kw)


def _rows():
    torch.manual_seed(1)
    return torch.randn(4 * T, D), torch.arange(T).repeat_interleave(4)


@pytest.mark.parametrize("name", list(archs.ARCHS))
def test_every_arch_maps_rows_to_features_and_routes_by_task(name):
    net = _build(name)
    x, t = _rows()
    y = net(x, t)
    assert y.shape == (4 * T, net.out_dim) and torch.isfinite(y).all()
    # the same observation under different task ids: task-conditioned trunks answer differently
    same = x[:1].repeat(T, 1)
    out = net(same, torch.arange(T))
    if name in ("mlp", "multihead"):  # the task enters through the one-hot in x (or the heads)
        assert torch.allclose(out[0], out[1])
    elif name in ("film", "lora"):  # start as the shared trunk (gamma 1, beta 0 / B = 0) ...
        assert torch.allclose(out[0], out[1])
        _perturb_task(net, 1)  # ... until their per-task parameters move
        out = net(same, torch.arange(T))
        assert torch.allclose(out[0], out[2]) and not torch.allclose(out[0], out[1])
    else:
        assert not torch.allclose(out[0], out[1])


def _perturb_task(net, task):
    """Move task ``task``'s row of every task-specific parameter."""
    specific = task_specific_names(net)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if n not in specific:
                continue
            if p.shape[0] == T:  # TaskTable rows
                p[task] += 0.5
            else:  # TaskLoRA: A [in, T r], B [T r, out]
                r = p.shape[1] // T if n.endswith(".A") else p.shape[0] // T
                if n.endswith(".A"):
                    p[:, task * r:(task + 1) * r] += 0.5
                else:
                    p[task * r:(task + 1) * r] += 0.5


@pytest.mark.parametrize("name", ["film", "softmod", "moore", "paco", "lora"])
def test_changing_one_tasks_parameters_changes_only_that_tasks_rows(name):
    net = _build(name)
    x, t = _rows()
    before = net(x, t)
    _perturb_task(net, 1)
    after = net(x, t)
    assert torch.allclose(before[t != 1], after[t != 1])
    assert not torch.allclose(before[t == 1], after[t == 1])


def test_moore_experts_are_orthonormal_per_sample():
    net = _build("moore", hidden=(32, 16), experts=4)
    x, _ = _rows()
    u = net.experts(x)  # [B, k, d]
    gram = u @ u.transpose(1, 2)
    assert torch.allclose(gram, torch.eye(4).expand_as(gram), atol=1e-5)
    v = torch.randn(7, 3, 5)
    q = gram_schmidt(v)  # the span is kept: v_1 is a multiple of u_1
    assert torch.allclose(torch.linalg.matrix_rank(torch.cat([v, q], 1)), torch.full((7,), 3))


def test_paco_with_one_task_is_a_plain_mlp_with_the_composed_weights():
    torch.manual_seed(0)
    paco = archs.build("paco", D, [32, 16], 1, sets=5)
    with torch.no_grad():
        paco.comp.weight.copy_(torch.randn(1, 5))
    mlp = MLPTrunk(D, [32, 16])
    with torch.no_grad():
        for layer, (w, b) in zip([m for m in mlp if isinstance(m, torch.nn.Linear)], paco.task_weights(0)):
            layer.weight.copy_(w.T)
            layer.bias.copy_(b)
    x = torch.randn(9, D)
    assert torch.allclose(paco(x, torch.zeros(9, dtype=torch.long)), mlp(x), atol=1e-5)


def test_paco_composed_weights_equal_the_mixed_layer_outputs_on_every_path():
    """compose=True (task's weights once, one GEMM per task) and compose=False (all K layers on every
    row, outputs mixed) are one function: on a task-major batch, a shuffled batch with a task
    missing, and in surgery's vmapped per-task gradients."""
    from mtrl.surgery.jacobian import per_task_grads

    fast, ref = _build("paco", sets=4), _build("paco", sets=4, compose=False)
    ref.load_state_dict(fast.state_dict())
    x, t = _rows()
    torch.testing.assert_close(fast(x, t), ref(x, t), rtol=1e-5, atol=1e-6)
    perm = torch.tensor([5, 0, 11, 3, 9, 1, 10, 2])  # tasks 1, 0, 2, 0, 2, 0, 2, 0: task 1 once
    torch.testing.assert_close(fast(x[perm], t[perm]), ref(x[perm], t[perm]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast(x[:4], t[:4]), ref(x[:4], t[:4]), rtol=1e-5, atol=1e-6)  # task 0 only
    assert fast(x[:0], t[:0]).shape == ref(x[:0], t[:0]).shape == (0, fast.out_dim)
    target = torch.randn(4 * T, fast.out_dim)

    def task_loss(call, tb):
        return (call(tb["x"], tb["t"]) - tb["y"]).pow(2).mean(), {}

    batch = {"x": x.view(T, 4, D), "t": t.view(T, 4), "y": target.view(T, 4, -1)}
    names = [n for n, _ in fast.named_parameters()]
    g_fast, l_fast, _ = per_task_grads(fast, names, task_loss, batch)
    g_ref, l_ref, _ = per_task_grads(ref, names, task_loss, batch)
    torch.testing.assert_close(l_fast, l_ref, rtol=1e-5, atol=1e-6)
    for n in names:
        torch.testing.assert_close(g_fast[n], g_ref[n], rtol=1e-4, atol=1e-6)


def test_per_task_layers_give_each_task_its_own_gradient_under_vmap():
    """TaskLinear reads its task from the first row inside surgery's vmap (one task per call)."""
    from mtrl.agents.networks import TaskMLP

    torch.manual_seed(0)
    net = TaskMLP(D, [8, 5], T)
    grads, vm, loop, _, _ = _vmapped_and_looped_grads(net, out_dim=5)
    torch.testing.assert_close(vm, loop, rtol=1e-5, atol=1e-6)
    assert grads["layers.0.weight"][1, 0].abs().sum() == 0  # task 1's loss leaves task 0's layer alone


def _vmapped_and_looped_grads(net, out_dim: int | None = None):
    """Per-task gradients of a squared error on ``_rows()``: vmapped (surgery's path) and by T backward
    passes; returns ``(grads by name, vmapped [T, P], looped [T, P], vmapped losses, looped losses)``."""
    from mtrl.surgery.jacobian import naive_per_task_grads, per_task_grads

    x, t = _rows()
    target = torch.randn(4 * T, out_dim or net.out_dim)

    def task_loss(call, tb):
        return (call(tb["x"], tb["t"]) - tb["y"]).pow(2).mean(), {}

    names = [n for n, _ in net.named_parameters()]
    grads, losses, _ = per_task_grads(net, names, task_loss, {"x": x.view(T, 4, D), "t": t.view(T, 4),
                                                              "y": target.view(T, 4, -1)})
    per = torch.stack([(net(x[t == k], t[t == k]) - target[t == k]).pow(2).mean() for k in range(T)])
    loop = naive_per_task_grads(per, [p for _, p in net.named_parameters()])
    return grads, torch.cat([grads[n].flatten(1) for n in names], 1), loop, losses, per.detach()


def _shared_mlp_of(net):
    mlp = MLPTrunk(D, [32, 32])
    with torch.no_grad():
        for dst, src in zip([m for m in mlp if isinstance(m, torch.nn.Linear)], net.layers):
            dst.load_state_dict(src.state_dict())
    return mlp


def test_lora_rank_zero_is_the_shared_trunk_and_rank_r_starts_there():
    x, t = _rows()
    flat = _build("lora", rank=0)
    assert flat.adapters is None and archs.count_params(flat)[1] == 0
    assert torch.allclose(flat(x, t), _shared_mlp_of(flat)(x))
    lora = _build("lora", rank=2)
    assert torch.allclose(lora(x, t), _shared_mlp_of(lora)(x))  # B = 0 at initialisation
    total, per_task = archs.count_params(lora)
    assert per_task == 2 * T * (D + 32) + 2 * T * (32 + 32)  # A [in, T r] and B [T r, out] per layer


def test_film_starts_as_the_mlp():
    x, t = _rows()
    film = _build("film")
    mlp = MLPTrunk(D, [32, 32])
    with torch.no_grad():
        for dst, src in zip([m for m in mlp if isinstance(m, torch.nn.Linear)], film.layers):
            dst.load_state_dict(src.state_dict())
    assert torch.allclose(film(x, t), mlp(x))


def test_care_attends_by_description_embedding():
    net = _build("care")
    x, _ = _rows()
    same = x[:1].repeat(T, 1)
    a = net(same, torch.arange(T))
    twin = _build("care", descriptions=[DESC[0], DESC[0], DESC[2]])  # tasks 0 and 1 described alike
    b = twin(same, torch.arange(T))
    assert not torch.allclose(a[0], a[1]) and torch.allclose(b[0], b[1])
    e1, e2, e3 = (embed(s) for s in ("press the button", "press the button down", "open the window"))
    assert abs(np.linalg.norm(e1) - 1) < 1e-6 and e1 @ e2 > e1 @ e3  # shared words -> closer
    np.testing.assert_array_equal(embed("press the button"), e1)  # stable (not Python's salted hash)


@pytest.mark.parametrize("name", list(archs.ARCHS))
def test_sac_learns_a_fixed_batch_with_each_arch_under_pcgrad(name):
    args = {"descriptions": DESC} if name == "care" else {}
    cfg = SACConfig(hidden=[32, 32], batch_per_task=16, lr=1e-3, arch=name, arch_args=args)
    agent = MTSAC(cfg, 8 + T, T, BOX, seed=0, surgery="pcgrad")
    rng = np.random.default_rng(0)
    n = 16 * T
    batch = {"obs": rng.normal(size=(n, 8 + T)).astype(np.float32), "actions": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
             "rewards": np.repeat([0.1, 1.0, 3.0], 16).astype(np.float32),
             "next_obs": rng.normal(size=(n, 8 + T)).astype(np.float32), "terminated": np.ones(n, np.float32),
             "task_ids": np.repeat(np.arange(T), 16)}
    outs = [agent.update(batch) for _ in range(150)]
    first, last = outs[0]["loss/critic"], outs[-1]["loss/critic"]
    assert np.all(last < first / 5), (first, last)  # terminal transitions: Q -> r, each task's loss falls
    assert np.all(np.diff(outs[-1]["sac/q"]) > 0)  # and the Q values are ordered as the tasks' rewards
    runner_policy = build_policy(agent.policy_spec)  # runners rebuild the same architecture
    runner_policy.load_state_dict(agent.policy_state())
    obs = torch.as_tensor(batch["obs"][:5])
    tids = torch.as_tensor(batch["task_ids"][:5])
    assert torch.allclose(runner_policy(obs, tids, deterministic=True)[0], agent.actor(obs, tids, deterministic=True)[0])


@pytest.mark.parametrize("name,specific", [("film", ("gamma", "beta")), ("lora", ("adapters",))])
def test_per_task_parameters_get_only_their_own_tasks_gradient_under_surgery(name, specific):
    net = _build(name)
    _perturb_task(net, 0)
    _perturb_task(net, 2)
    x, t = _rows()
    target = torch.randn(4 * T, net.out_dim)
    step = SurgeryStep(net, get_surgery("pcgrad"))
    assert all(n.startswith(specific) for n in step.specific) and step.specific

    def task_loss(call, tb):
        return (call(tb["x"], tb["t"]) - tb["y"]).pow(2).mean(), {}

    batch = {"x": x.view(T, 4, D), "t": t.view(T, 4), "y": target.view(T, 4, -1)}
    step.active()
    step(task_loss, batch)
    own = copy.deepcopy(net)
    own.zero_grad()
    ((own(x[t == 2], t[t == 2]) - target[t == 2]).pow(2).mean() / T).backward()
    theirs = dict(own.named_parameters())
    for n in step.specific:  # every per-task parameter: task 2's part holds task 2's gradient at the mean's scale
        g, g_own = dict(net.named_parameters())[n].grad, theirs[n].grad
        if name == "film":
            assert torch.allclose(g[2], g_own[2], atol=1e-6), n
        else:  # LoRA: A [in, T r] columns / B [T r, out] rows of task 2
            r = 4
            part = (slice(None), slice(2 * r, 3 * r)) if n.endswith(".A") else (slice(2 * r, 3 * r),)
            assert torch.allclose(g[part], g_own[part], atol=1e-6), n
            assert g_own.abs().sum() == g_own[part].abs().sum()  # task 2's loss touches only its own part


@pytest.mark.parametrize("name", list(archs.ARCHS))
def test_vmapped_per_task_gradients_equal_the_loop_for_every_arch(name):
    net = _build(name)
    _perturb_task(net, 1)
    _, vm, loop, losses, per = _vmapped_and_looped_grads(net)
    assert torch.allclose(vm, loop, atol=1e-5) and torch.allclose(losses, per, atol=1e-6)


def test_the_plain_mlp_keeps_its_state_dict_keys():
    """Checkpoints written before the registry load: the MLP trunks' parameter names are unchanged."""
    actor = build_policy({"kind": "sac", "obs_dim": 6, "num_tasks": 2, "act_dim": 4, "hidden": [8, 8]})
    assert [k for k in actor.state_dict() if k.startswith("trunk")] == \
        ["trunk.0.weight", "trunk.0.bias", "trunk.2.weight", "trunk.2.bias"]
    ppo = build_policy({"kind": "ppo", "obs_dim": 6, "num_tasks": 2, "action_space": gym.spaces.Discrete(3),
                        "hidden": [8]})
    assert {k for k in ppo.state_dict() if "trunk" in k} == {"actor_trunk.0.weight", "actor_trunk.0.bias",
                                                            "critic_trunk.0.weight", "critic_trunk.0.bias"}


def test_softmod_weighs_the_last_modules_by_a_routed_softmax():
    net = _build("softmod", modules=3, layers=2)
    x, t = _rows()
    net(x, t).pow(2).sum().backward()
    assert net.route_out.weight.grad.abs().sum() > 0 and net.task.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="layers >= 2"):
        _build("softmod", layers=1)


@pytest.mark.parametrize("name", ["softmod", "moore", "paco", "multihead"])
def test_ppo_updates_with_each_arch_under_surgery(name):
    from mtrl.envs import make
    from mtrl.runners import Runner

    kw = dict(taskset="minigrid/MT3", envs_per_task=2, seed=0)
    probe = make(**kw)
    cfg = PPOConfig(num_steps=16, epochs=1, minibatches=1, arch=name, hidden=[32, 32])
    agent = MTPPO(cfg, probe.obs_dim, probe.num_tasks, probe.single_action_space, seed=0, surgery="pcgrad")
    if name == "multihead":
        assert agent.net.actor_head.num_heads == probe.num_tasks
    before = copy.deepcopy(agent.policy_state())
    runner = Runner({**kw, "slots": list(range(probe.total_slots))}, agent.policy_spec, 0)
    out = agent.update(runner.sample(16, agent.policy_state()))
    assert out["loss/task"].shape == (3,) and np.all(np.isfinite(out["loss/task"]))
    assert any(not torch.equal(before[k], v) for k, v in agent.policy_state().items())


def test_bad_architecture_input_is_a_clear_error():
    with pytest.raises(MtrlError, match="unknown architecture 'moor'; did you mean 'moore'.*valid architectures: 'mlp'"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["sac.arch=moor"])
    with pytest.raises(MtrlError, match="architecture 'moore' takes no option 'rank'; its options: experts"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["sac.arch=moore", "sac.arch_args.rank=2"])
    with pytest.raises(MtrlError, match="bad sac.arch_args for softmod: softmod needs modules >= 1"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["sac.arch=softmod", "sac.arch_args={modules: 0}"])
    with pytest.raises(MtrlError, match="bad sac.arch_args for moore"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["sac.arch=moore", "sac.arch_args={experts: 999}"])
    with pytest.raises(MtrlError, match="needs shared trunks"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["sac.arch=paco", "sac.heads=ensemble"])
    with pytest.raises(MtrlError, match="no description, which this architecture needs: CartPole-v1$|CartPole-v1;"):
        build_config(["envs/minigrid-mt3.yaml", "agents/mtppo.yaml"],
                     ["ppo.arch=care", "taskset=custom", "tasks=[MiniGrid-Empty-5x5-v0,CartPole-v1]"])
    assert descriptions(["reach-v3", "DoorKey-5x5"])[0].startswith("reach")


def test_cli_trains_and_evaluates_an_architecture_and_logs_its_parameter_counts(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, run = Path(__file__).resolve().parent.parent, tmp_path / "run"

    def mtrl(*args):
        return subprocess.run([sys.executable, "-m", "mtrl.cli", *map(str, args)], capture_output=True, text=True,
                              cwd=root, timeout=600)

    r = mtrl("train", "envs/minigrid-mt3.yaml", "agents/mtppo.yaml", "ppo.arch=care", "ppo.arch_args.experts=3",
             "surgery=pcgrad", "total_steps=600", "ppo.num_steps=32", "eval_every=0", f"run_dir={run}")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("networks (care)"))
    total = int(line.split("policy ")[1].split(" ")[0].replace(",", ""))
    ev = EventAccumulator(str(run))
    ev.Reload()
    assert ev.Scalars("params/policy/total")[0].value == total
    r = mtrl("eval", run, "--episodes", "1")
    assert r.returncode == 0, r.stderr
    assert "Empty-5x5" in r.stdout
