"""The resumable benchmarks' bookkeeping (benchmarks/runlock.py): run once, skip what is done or held."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from runlock import load_rows, run_lock, run_once  # noqa: E402


def test_run_once_appends_a_row_and_skips_done_or_locked_runs(tmp_path):
    calls = []

    def run(seed):
        calls.append(seed)
        return {"seed": seed, "success": 0.5}

    assert run_once(tmp_path, "a_s0", lambda r: r["seed"] == 0, lambda: run(0)) == {"seed": 0, "success": 0.5}
    assert run_once(tmp_path, "a_s0", lambda r: r["seed"] == 0, lambda: run(0)) is None  # done: skipped
    with run_lock(tmp_path, "a_s1") as mine:  # another process runs seed 1
        assert mine
        assert run_once(tmp_path, "a_s1", lambda r: r["seed"] == 1, lambda: run(1)) is None
    run_once(tmp_path, "a_s1", lambda r: r["seed"] == 1, lambda: run(1))
    assert calls == [0, 1]
    assert load_rows(tmp_path / "results.jsonl") == [{"seed": 0, "success": 0.5}, {"seed": 1, "success": 0.5}]
    assert [json.loads(x)["seed"] for x in (tmp_path / "results.jsonl").read_text().splitlines()] == [0, 1]
    assert load_rows(tmp_path / "missing.jsonl") == []


def test_surgery_comparison_recipe_builds_a_valid_config_for_each_method():
    """benchmarks/archs_metaworld.py's surgery re-run: ``cagrad:c=0.9`` becomes its surgery_args, the
    shared-network recipe is a valid run config for every method, and it shares no per-task networks."""
    from archs_metaworld import SURGERY_RECIPE, surgery_overrides

    from mtrl.config import build_config

    assert surgery_overrides("cagrad:c=0.9") == ["surgery=cagrad", "surgery_args.c=0.9"]
    assert surgery_overrides("pcgrad") == ["surgery=pcgrad"]
    for spec, args in [("mean", {}), ("cagrad:c=0.9", {"c": 0.9}), ("nashmtl", {})]:
        cfg = build_config(["envs/reach4.yaml", "agents/mtsac.yaml"], [*SURGERY_RECIPE, *surgery_overrides(spec)])
        assert cfg.surgery == spec.split(":")[0] and cfg.surgery_args == args
        assert cfg.reward_norm == "max_return" and cfg.sac.heads == "single"


def _row(variant, seed, success, returns=None):
    tasks = ["push-v3", "door-open-v3"]
    row = {"variant": variant, "seed": seed, "minutes": None, "overrides": ["sac.arch=x"], "total_steps": 200,
           "curve": [[100, 10.0, 0.0], [200, 20.0, success]], "per_task_final": dict.fromkeys(tasks, success)}
    if returns is not None:
        row["return_curve"] = [[100, returns / 2], [200, returns]]
        row["per_task_return_final"] = dict.fromkeys(tasks, returns)
    return row


def test_a_run_is_done_only_when_a_row_has_its_label_seed_overrides_and_budget():
    """archs_metaworld's skip check: a step-budgeted row does not stand in for a time-budgeted rerun,
    another step budget, seed, label or override list."""
    from archs_metaworld import same_run

    row = _row("moore", 1, 0.5)
    assert same_run(row, "moore", 1, ["sac.arch=x"], None, 200)
    assert not same_run(row, "moore", 1, ["sac.arch=x"], 6.0, 200)
    assert not same_run(row, "moore", 1, ["sac.arch=x"], None, 400)
    assert not same_run(row, "moore", 2, ["sac.arch=x"], None, 200)
    assert not same_run(row, "moore+pcgrad", 1, ["sac.arch=x"], None, 200)
    assert not same_run(row, "moore", 1, ["sac.arch=x", "surgery=pcgrad"], None, 200)


def test_arch_table_reports_returns_where_every_seed_has_them(tmp_path):
    """At success 0 everywhere the evaluation return still ranks the architectures; a group with a
    seed that has no returns (a row from before rows carried them) says n/a, not a partial mean."""
    from archs_metaworld import arch_table

    rows = [_row("mlp", 0, 0.0, 100.0), _row("mlp", 1, 0.0, 300.0), _row("moore", 0, 0.5, 50.0), _row("moore", 1, 0.5)]
    lines = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in arch_table(rows, tmp_path, reps=50).splitlines()[2:]}
    assert lines["mlp"][7].startswith("200 [") and lines["mlp"][4].startswith("**0.00**")
    assert lines["moore"][7] == "n/a" and lines["moore"][4].startswith("**0.50**")
    assert lines["mlp"][8] == "push 200, door-open 200" and lines["moore"][8] == "n/a"
    assert (tmp_path / "table_archs.md").is_file()


def test_arch_curves_draw_a_return_row_only_when_every_group_has_returns(tmp_path):
    """curves_steps.png: the evaluation-return row appears when every architecture drawn has return
    curves; with only some (rows from before returns were logged) it is left out, since a panel
    with only the newer runs would read as a ranking."""
    from archs_metaworld import arch_table
    from matplotlib.image import imread

    full = [_row("mlp", 0, 0.0, 100.0), _row("mlp", 1, 0.0, 300.0), _row("moore", 0, 0.5, 50.0)]
    arch_table(full, tmp_path, reps=20)
    both_rows = imread(tmp_path / "curves_steps.png").shape[0]
    arch_table([*full, _row("paco", 0, 0.2)], tmp_path, reps=20)
    success_only = imread(tmp_path / "curves_steps.png").shape[0]
    assert both_rows == 2 * success_only  # 8 vs 4 inches high at the same dpi


def test_result_rows_take_the_runs_evaluation_returns(tmp_path):
    """A run's row carries its evaluation returns: the mean over tasks per evaluation and each
    task's final return (sac_recipes.returns_of, from eval_history.jsonl); none logged, none added."""
    from sac_recipes import returns_of

    hist = [{"step": s, "mean_success": 0.0, "success": {"push-v3": 0.0, "door-open-v3": 0.0},
             "return": {"push-v3": r, "door-open-v3": 2 * r}} for s, r in [(100, 10.0), (200, 30.0)]]
    (tmp_path / "eval_history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in hist))
    assert returns_of(tmp_path) == {"return_curve": [[100, 15.0], [200, 45.0]],
                                    "per_task_return_final": {"push-v3": 30.0, "door-open-v3": 60.0}}
    assert returns_of(tmp_path / "missing") == {}


def test_a_step_budgeted_run_stopped_by_sigterm_resumes_where_it_stopped(tmp_path):
    """sac_recipes.run_one: a step-budgeted run whose benchmark gets SIGTERM (the end of a session)
    passes it on to its ``mtrl train``, which checkpoints; no row is written, and called again with
    the same command the run continues from that checkpoint to the full budget: one evaluation per
    step, the resume step in the row, the replay buffers removed once it is done."""
    import os
    import signal
    import threading
    import time

    import pytest
    from sac_recipes import run_one

    steps, every = 4000, 500
    overrides = ["taskset=metaworld/MT1:reach-v3", "max_episode_steps=100", "sac.hidden=[32,32]",
                 "sac.learning_starts=200", "sac.batch_per_task=16"]
    args = ("r", 0, overrides, tmp_path, None, every, 1)
    run_dir = tmp_path / "runs" / "r_s0"

    def stop_at_first_checkpoint() -> None:  # the checkpoint exists only once run_one's handler is set
        deadline = time.time() + 300
        while not list((run_dir / "checkpoints").glob("step_*.pt")) and time.time() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)  # to the benchmark (this process), as a session's end does

    threading.Thread(target=stop_at_first_checkpoint, daemon=True).start()
    with pytest.raises(SystemExit, match="run the benchmark again to continue it"):
        run_one(*args, total_steps=steps)
    at = json.loads((run_dir / "summary.json").read_text())["step"]
    assert 0 < at < steps
    first_sum, first_n = json.loads((run_dir / "benchmark_run.json").read_text())["load"]

    row = run_one(*args, total_steps=steps)
    assert row["resumed_from"] == [at]
    load_sum, load_n = json.loads((run_dir / "benchmark_run.json").read_text())["load"]
    assert 0 < first_n < load_n  # the row's load average covers both parts of the run
    assert row["load_avg"] == pytest.approx(load_sum / load_n) and load_sum >= first_sum
    assert [c[0] for c in row["curve"]] == list(range(every, steps + 1, every))
    assert json.loads((run_dir / "summary.json").read_text())["step"] == steps
    assert not list((run_dir / "checkpoints").glob("replay_*.npz"))  # buffers only serve a resume
    assert "SIGTERM: writing a checkpoint" in (run_dir / "train.log").read_text()  # both parts in one log


def test_a_time_budgeted_run_stopped_from_outside_writes_no_row(tmp_path):
    """sac_recipes.run_one: SIGTERM to the benchmark before a time-budgeted run's minutes are up
    stops the trainer cleanly, but the shortened run is no result (it starts again next time)."""
    import os
    import signal
    import threading
    import time

    import pytest
    from sac_recipes import run_one

    overrides = ["taskset=metaworld/MT1:reach-v3", "max_episode_steps=100", "sac.hidden=[32,32]",
                 "sac.learning_starts=200", "sac.batch_per_task=16"]
    hist = tmp_path / "runs" / "t_s0" / "eval_history.jsonl"

    def stop_after_first_evaluation() -> None:
        deadline = time.time() + 300
        while not hist.is_file() and time.time() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_after_first_evaluation, daemon=True).start()
    with pytest.raises(SystemExit, match="stopped from outside"):
        run_one("t", 0, overrides, tmp_path, 30.0, 500, 1, total_steps=1_000_000)
    assert 0 < json.loads((tmp_path / "runs" / "t_s0" / "summary.json").read_text())["step"] < 1_000_000
