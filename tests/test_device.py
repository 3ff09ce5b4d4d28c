"""Learner placement (``device: auto|cpu|cuda``): the choice and its one-line errors everywhere,
and, where a GPU is visible (never in CI), an MT-SAC learner on it that matches the CPU one."""

import io

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_sac import _batch  # (tests/ is on sys.path under pytest)

from mtrl.agents import MTSAC, SACConfig, archs
from mtrl.agents import device as device_mod
from mtrl.errors import MtrlError

BOX = gym.spaces.Box(-1, 1, (4,), np.float32)
DESC = ["reach a goal", "press the button", "open the drawer"]  # CARE's task descriptions (T = 3)
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the device check)")


def test_resolve_names_and_errors():
    assert device_mod.resolve("cpu") == torch.device("cpu")
    assert device_mod.resolve("auto", why_not="algo=mtppo (...)") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        device_mod.resolve("tpu")
    with pytest.raises(ValueError, match="not built for algo=mtppo"):
        device_mod.resolve("cuda", why_not="algo=mtppo (its learner runs on the CPU)")
    assert device_mod.supported("mtsac") is None
    assert "learners=2" in device_mod.supported("mtsac", learners=2)
    assert "imitation=gail" in device_mod.supported("mtsac", imitation="gail")
    assert "camrl" in device_mod.supported("mtsac", curriculum="camrl")


@no_gpu
def test_without_a_gpu_auto_is_the_cpu_and_cuda_is_refused():
    assert device_mod.resolve("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="torch sees no GPU"):
        device_mod.resolve("cuda")


def test_config_refuses_unknown_devices_and_gpu_for_cpu_only_learners():
    from mtrl.config import build_config

    with pytest.raises(MtrlError, match="unknown device 'gpu'; .*valid choices: 'auto', 'cpu', 'cuda'"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["device=gpu"])
    with pytest.raises(MtrlError, match="device=cuda is not built for algo=mtppo"):
        build_config(["envs/minigrid-mt3.yaml", "agents/mtppo.yaml"], ["device=cuda"])
    with pytest.raises(MtrlError, match="device=cuda:0 is not built for learners=2"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["device=cuda:0", "learners=2"])
    with pytest.raises(MtrlError, match="unknown device 'cuda:x'"):
        build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["device=cuda:x"])
    cfg = build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], ["device=cuda:1"])  # static check passes
    assert cfg.device == "cuda:1"


def test_a_run_from_before_device_existed_stays_on_the_cpu(tmp_path):
    """config.yaml without ``device`` (written before the key existed) loads as ``cpu``, not the
    new default ``auto``: resuming it on a GPU machine continues it as it was trained."""
    import yaml

    from mtrl import config
    from mtrl.envs import make
    from mtrl.runs import build_agent, env_kwargs

    cfg = config.build_config(["envs/minigrid-mt3.yaml", "agents/mtppo.yaml"], [])
    assert cfg.device == "auto"
    config.save(cfg, tmp_path / "config.yaml")
    data = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del data["device"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    assert config.load(tmp_path / "config.yaml").device == "cpu"
    with pytest.raises(MtrlError, match="device=cuda is not built for algo=mtppo"):  # an explicit device is checked too
        build_agent(cfg, make(**env_kwargs(cfg)), device="cuda")


def test_cpu_learner_is_unchanged_by_placement():
    """``device=cpu`` is the old learner: the policy handed out is the agent's own, updates work."""
    agent = MTSAC(SACConfig(hidden=[32], batch_per_task=8), 10, 2, BOX, device="cpu")
    assert device_mod.cpu_policy(agent) is agent.policy
    assert device_mod.learner_device(agent) == "cpu"
    out = agent.update(_batch(2, 8, 10))
    assert isinstance(out["loss/critic"], np.ndarray) and out["loss/critic"].shape == (2,)


@needs_gpu
@pytest.mark.parametrize("fields,surgery", [
    (dict(hidden=[64, 64]), "mean"),
    (dict(hidden=[64, 64]), "pcgrad"),
    (dict(hidden=[64, 64]), "cagrad"),
    (dict(hidden=[64, 64]), "samgs"),  # gradient-sized state: combined on the CPU
    (dict(hidden=[64, 64], heads="multi"), "mean"),
    (dict(hidden=[64, 64], heads="ensemble"), "mean"),
    (dict(hidden=[64, 64], critic="bronet", critic_width=64, critic_loss="categorical", bins=21), "mean"),
    (dict(hidden=[64, 64], task_embedding=8), "mean"),
    # every network architecture (issue 14), plain and with PCGrad's per-task gradients
    *[(dict(hidden=[64, 64], arch=name, arch_args={"descriptions": DESC} if archs.get(name).needs_descriptions else {}),
       surgery) for name in archs.ARCHS if name != "mlp" for surgery in ("mean", "pcgrad")],
])
def test_gpu_learner_matches_the_cpu_learner(fields, surgery):
    """Same seed, same batches: K float32 updates on the GPU give the CPU's weights to float
    tolerance (the policy noise comes from the same CPU generator), and the outputs are numpy."""
    T, n, obs_dim = 3, 16, 12
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    agents = {d: MTSAC(SACConfig(batch_per_task=n, **fields), obs_dim, T, BOX, seed=3, surgery=surgery, device=d)
              for d in ("cpu", "cuda")}
    for i in range(4):
        batch = _batch(T, n, obs_dim, seed=i)
        outs = {d: a.update(batch) for d, a in agents.items()}
        for k, v in outs["cpu"].items():
            if isinstance(v, np.ndarray):
                assert isinstance(outs["cuda"][k], np.ndarray), k
                np.testing.assert_allclose(outs["cuda"][k], v, rtol=1e-3, atol=1e-4, err_msg=k)
    cpu_w, gpu_w = agents["cpu"].policy_state(), agents["cuda"].policy_state()
    for k, v in cpu_w.items():
        assert gpu_w[k].device.type == "cpu", "runners get CPU weights"
        torch.testing.assert_close(gpu_w[k], v, rtol=1e-3, atol=1e-4)


@needs_gpu
def test_gpu_checkpoint_resumes_on_the_cpu_and_on_the_gpu():
    """A GPU learner's state, written and read back as checkpoints are (map_location=cpu), loads
    into a CPU learner (``mtrl eval`` on a machine without a GPU) and into a GPU learner (resume)."""
    from mtrl import checkpoint

    T, n, obs_dim = 2, 8, 10
    gpu = MTSAC(SACConfig(hidden=[32], batch_per_task=n), obs_dim, T, BOX, seed=1, device="cuda")
    for i in range(3):
        gpu.update(_batch(T, n, obs_dim, seed=i))
    buf = io.BytesIO()
    torch.save(checkpoint.to_safe({"agent": gpu.state_dict()}), buf)
    state = checkpoint.from_safe(torch.load(io.BytesIO(buf.getvalue()), map_location="cpu", weights_only=True))
    for d in ("cpu", "cuda"):
        other = MTSAC(SACConfig(hidden=[32], batch_per_task=n), obs_dim, T, BOX, seed=99, device=d)
        other.load_state_dict(state["agent"])
        assert other.updates == gpu.updates
        for k, v in gpu.policy_state().items():
            torch.testing.assert_close(other.policy_state()[k], v)
        batch = _batch(T, n, obs_dim, seed=5)
        np.testing.assert_allclose(other.update(batch)["loss/critic"], MTSAC.update(_clone(gpu, d), batch)["loss/critic"],
                                   rtol=1e-3, atol=1e-4)
    policy = device_mod.cpu_policy(gpu)
    assert next(policy.parameters()).device.type == "cpu" and next(gpu.policy.parameters()).device.type == "cuda"
    assert device_mod.learner_device(gpu).startswith("cuda:0 (")


def _clone(agent: MTSAC, device: str) -> MTSAC:
    """A copy of ``agent`` on ``device`` (through its state dict)."""
    c = MTSAC(agent.cfg, agent.policy_spec["obs_dim"], agent.num_tasks, BOX, device=device)
    c.load_state_dict({k: v for k, v in agent.state_dict().items()})
    return c
