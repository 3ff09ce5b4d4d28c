"""`mtrl compare`: grouping by method, IQM and CIs as rliable computes them, outputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from rliable import metrics

from mtrl.compare import aggregate, collect

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["a", "b", "c", "d"]


def _run(path: Path, surgery: str, seed: int, scores, history=True):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"algo": "mtsac", "surgery": surgery, "seed": seed,
                                                      "sac": {"heads": "single"}}))
    (path / "eval.json").write_text(json.dumps({"tasks": {t: {"split": "train", "success": float(s)}
                                                          for t, s in zip(TASKS, scores)}}))
    if history:
        with open(path / "eval_history.jsonl", "w") as f:
            for k in range(1, 4):
                f.write(json.dumps({"step": 1000 * k, "mean_success": float(np.mean(scores)) * k / 3,
                                    "success": dict(zip(TASKS, scores))}) + "\n")


def test_compare_iqm_matches_rliable(tmp_path):
    r = np.random.default_rng(0)
    data = {"mean": r.uniform(0, 1, (5, 4)), "pcgrad": r.uniform(0.3, 1, (5, 4))}
    dirs = []
    for m, mat in data.items():
        for s, row in enumerate(mat):
            _run(tmp_path / f"{m}{s}", m, s, row)
            dirs.append(tmp_path / f"{m}{s}")
    groups = collect(dirs)
    assert set(groups) == {"mtsac", "mtsac+pcgrad"} and len(groups["mtsac+pcgrad"]) == 5
    res = aggregate(groups, reps=300)
    for label, m in [("mtsac", "mean"), ("mtsac+pcgrad", "pcgrad")]:
        v = res["methods"][label]
        assert np.isclose(v["iqm"], metrics.aggregate_iqm(data[m]))
        assert np.isclose(v["mean"], data[m].mean())
        assert v["iqm_ci95"][0] <= v["iqm"] <= v["iqm_ci95"][1]
        np.testing.assert_allclose([v["per_task"][t] for t in TASKS], data[m].mean(0))


def test_compare_cli_writes_outputs_and_rejects_mixed_sets(tmp_path):
    _run(tmp_path / "r0", "mean", 0, [1, 0, 1, 0])
    _run(tmp_path / "r1", "cagrad", 0, [1, 1, 1, 0])
    out = tmp_path / "cmp"
    p = subprocess.run([sys.executable, "-m", "mtrl.cli", "compare", tmp_path / "r0", tmp_path / "r1", "--out", out,
                        "--reps", "200"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    for f in ["compare.md", "compare.json", "curves.png", "per_task.png"]:
        assert (out / f).is_file()
    assert "mtsac+cagrad" in (out / "compare.md").read_text()
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text("algo: mtppo\n")
    (other / "summary.json").write_text(json.dumps({"success": {"x": 1.0}}))
    p = subprocess.run([sys.executable, "-m", "mtrl.cli", "compare", tmp_path / "r0", other], capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2 and "compare runs of one task set" in p.stderr


def test_compare_area_under_curve_and_conflict_summary(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from mtrl.compare import markdown

    dirs = []
    for s, scores in enumerate([[1, 0, 1, 0], [1, 1, 1, 0]]):
        run = tmp_path / f"pc{s}"
        _run(run, "pcgrad", s, scores)
        with SummaryWriter(str(run)) as w:
            for step, (frac, cond) in enumerate([(0.5, 2.0), (0.0, 4.0), (0.25, 100.0)]):
                w.add_scalar("diag/critic/conflict_fraction", frac + 0.25 * s, step)
                w.add_scalar("diag/critic/condition_number", cond, step)
                # per-task norms: spreads 2, 10 and 5; the mean tag is not a task
                for task, norm in zip("abc", [(1.0, 2.0, 1.5), (0.5, 5.0, 1.0), (2.0, 10.0, 4.0)][step]):
                    w.add_scalar(f"diag/critic/grad_norm/{task}", norm, step)
                w.add_scalar("diag/critic/grad_norm/mean", 100.0, step)
            # a resumed run logs step 1 again: its last values (spread 5) replace the first
            for task, norm in zip("abc", (1.0, 5.0, 2.0)):
                w.add_scalar(f"diag/critic/grad_norm/{task}", norm, 1)
        dirs.append(run)
    _run(tmp_path / "m0", "mean", 0, [0, 0, 1, 0])
    dirs.append(tmp_path / "m0")
    res = aggregate(collect(dirs), reps=100)
    pc, mean = res["methods"]["mtsac+pcgrad"], res["methods"]["mtsac"]
    # eval_history holds mean_success * k / 3 for k = 1..3: its average is 2/3 of the final mean
    assert np.isclose(pc["auc"], np.mean([0.5, 0.75]) * 2 / 3) and np.isclose(mean["auc"], 0.25 * 2 / 3)
    assert pc["auc_range"] == [0.5 * 2 / 3, 0.75 * 2 / 3]
    assert np.isclose(pc["conflict"]["critic"]["conflict_fraction"], np.mean([0.25, 0.5]))
    assert np.isclose(pc["conflict"]["critic"]["condition_number"], 4.0)
    assert np.isclose(pc["conflict"]["critic"]["norm_spread"], 5.0)
    assert "conflict" not in mean
    md = markdown(res)
    assert "conflicting pairs (critic)" in md and "| mtsac | 0.167" in md
    assert "grad-norm spread (critic)" in md and "| 5.0 |" in md
    # a resumed run repeats steps (kept once, last value wins); a run without evaluations during
    # training is left out of the area under the curve and the count says so
    with open(tmp_path / "m0" / "eval_history.jsonl", "a") as f:
        f.write(json.dumps({"step": 3000, "mean_success": 0.25, "success": {}}) + "\n")
    _run(tmp_path / "m1", "mean", 1, [1, 1, 1, 1], history=False)
    res = aggregate(collect([*dirs, tmp_path / "m1"]), reps=100)
    mean = res["methods"]["mtsac"]
    assert np.isclose(mean["auc"], 0.25 * 2 / 3) and mean["auc_runs"] == 1 and mean["runs"] == 2
    assert "(1 runs)" in markdown(res)


def test_method_label_groups_by_curriculum_and_heads():
    from mtrl.compare import method_label

    assert method_label({"algo": "mtppo"}) == "mtppo"
    assert method_label({"algo": "mtppo", "curriculum": "plr"}) == "mtppo@plr"
    assert method_label({"algo": "mtppo", "ppo": {"heads": "ensemble"}, "curriculum": "camrl"}) == "mtppo-ensemble@camrl"
    assert method_label({"algo": "mtsac", "surgery": "pcgrad", "curriculum": "success"}) == "mtsac+pcgrad@success"
    assert method_label({"algo": "mtppo", "ppo": {"heads": "options"}, "imitation": "mhairl"}) == "mtppo-options:mhairl"
    assert method_label({"algo": "bc"}) == "bc"
    assert method_label({"algo": "mtsac", "sac": {"arch": "moore"}, "surgery": "pcgrad"}) == "mtsac-moore+pcgrad"
    assert method_label({"algo": "mtppo", "ppo": {"arch": "multihead"}}) == "mtppo-multihead"
    assert method_label({"algo": "mtsac", "surgery": "cagrad", "surgery_args": {"c": 0.9}}) == "mtsac+cagrad(c=0.9)"
    assert method_label({"algo": "mtsac", "reward_norm": "max_return"}) == "mtsac[max_return]"
    assert method_label({"algo": "mtsac", "reward_norm": "none", "surgery_args": {}}) == "mtsac"


def test_labels_leave_out_surgery_args_at_their_defaults():
    from mtrl import surgery
    from mtrl.compare import method_label
    from mtrl.errors import MtrlError

    assert surgery.defaults("cagrad")["c"] == 0.5 and surgery.defaults("fastcagrad")["k"] == 4
    assert surgery.defaults("mgda") == {"epsilon": 1e-6, "max_iters": 1000}  # mtrl's, over torchjd's
    assert surgery.defaults("gcond")["thresholds"] == (-0.8, -0.5, 0.0)
    implicit = method_label({"algo": "mtsac", "surgery": "cagrad"})
    assert implicit == method_label({"algo": "mtsac", "surgery": "cagrad", "surgery_args": {"c": 0.5}}) == "mtsac+cagrad"
    assert method_label({"algo": "mtsac", "surgery": "cagrad", "surgery_args": {"c": 0.5, "k": 2}}) == "mtsac+cagrad(k=2)"
    assert method_label({"algo": "mtsac", "surgery": "gcond",
                         "surgery_args": {"thresholds": [-0.8, -0.5, 0.0]}}) == "mtsac+gcond"  # a YAML list
    assert method_label({"algo": "mtsac", "surgery": "fastcagrad", "surgery_args": {"k": 4}}) == "mtsac+fastcagrad"
    # within one label, a default left implicit is no difference; a value the label rounds is
    from mtrl.compare import config_differences

    base = {"algo": "mtsac", "surgery": "cagrad"}
    assert config_differences([base, {**base, "surgery_args": {"c": 0.5}}]) == []
    assert config_differences([{**base, "surgery_args": {"c": 0.9}},
                               {**base, "surgery_args": {"c": 0.9 + 1e-12}}]) == ["surgery_args.c"]
    # an unknown parameter stays visible (training would reject it)
    assert method_label({"algo": "mtsac", "surgery": "pcgrad", "surgery_args": {"zeta": 1}}) == "mtsac+pcgrad(zeta=1)"
    with pytest.raises(MtrlError, match="valid methods"):
        surgery.defaults("pcgard")


def test_compare_names_settings_that_differ_within_a_method(tmp_path, capsys):
    from mtrl.compare import compare

    for s, (c, hidden) in enumerate([(0.5, [64]), (0.9, [64]), (0.5, [64]), (0.5, [32])]):
        run = tmp_path / f"r{s}"
        _run(run, "cagrad", s, [1, 0, s % 2, 0])
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg.update(surgery_args={"c": c}, run_dir=str(run), sac={"heads": "single", "hidden": hidden})
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = compare(sorted(tmp_path.glob("r*")), tmp_path / "cmp", reps=50)
    # different c: different methods; the hidden sizes mixed inside c=0.5 are named, seed and run_dir are not
    # c=0.5 is CAGrad's default, so it is not in the label
    assert set(res["methods"]) == {"mtsac+cagrad", "mtsac+cagrad(c=0.9)"}
    assert res["methods"]["mtsac+cagrad"]["runs"] == 3
    assert res["config_differences"] == {"mtsac+cagrad": ["sac.hidden"]}
    assert "differ in sac.hidden" in capsys.readouterr().err
    assert "**Mixed settings:**" in (tmp_path / "cmp" / "compare.md").read_text()


def test_mixed_settings_ignore_defaults_missing_from_older_runs_and_the_unused_section(tmp_path):
    from mtrl.compare import config_differences, read_config

    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(yaml.safe_dump({"taskset": "minigrid/mt3", "algo": "mtppo", "seed": 0, "log_every": 5}))
    # written by a newer mtrl: a SAC key it did not have (unused by MT-PPO), a default written out, a new seed
    new.write_text(yaml.safe_dump({"taskset": "minigrid/mt3", "algo": "mtppo", "seed": 1, "log_every": 1,
                                   "sac": {"actor_ema": 0.5}, "ppo": {"decoupled": False}}))
    assert config_differences([read_config(old), read_config(new)]) == []
    newer = tmp_path / "newer.yaml"
    newer.write_text(yaml.safe_dump({"taskset": "minigrid/mt3", "algo": "mtppo", "ppo": {"kl_coeff": 0.1}}))
    assert config_differences([read_config(old), read_config(newer)]) == ["ppo.kl_coeff"]


def test_a_methods_interval_does_not_depend_on_the_other_methods_listed():
    from mtrl.compare import interval_estimates

    rng = np.random.default_rng(0)
    a, b = rng.random((3, 4)), rng.random((3, 4))
    alone = interval_estimates({"a": a}, reps=200)
    both = interval_estimates({"b": b, "a": a}, reps=200)
    assert np.array_equal(alone[0]["a"], both[0]["a"]) and np.array_equal(alone[1]["a"], both[1]["a"])
