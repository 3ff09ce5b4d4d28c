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
