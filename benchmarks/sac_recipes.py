"""MT-SAC recipe ablation on Meta-World reach4: the current MT-SAC against each sample-efficiency
piece alone and their combination, at a fixed wall-clock budget per run, one run at a time.

Each (variant, seed) is one ``mtrl train envs/reach4.yaml agents/mtsac.yaml <variant overrides>``
stopped with SIGTERM (its clean stop: checkpoint, exit 0) once ``--minutes`` of wall-clock have
passed, evaluating every ``--eval-every`` env steps (deterministic, ``--eval-episodes`` per
task). The run's ``eval_history.jsonl`` has env steps and training wall-clock seconds at each
evaluation. Every finished run appends one JSON line to ``OUT/results.jsonl`` and is skipped
when the script runs again, so the ablation can span sessions (an interrupted time-budgeted run
restarts; a step-budgeted one resumes: :func:`run_one`).

    .venv/bin/python benchmarks/sac_recipes.py                          # every variant, seeds 0 1
    .venv/bin/python benchmarks/sac_recipes.py --variants base combo --seeds 0 1 2 --minutes 60
    .venv/bin/python benchmarks/sac_recipes.py --plot-only
    .venv/bin/python benchmarks/sac_recipes.py --plot-only --at-minutes 13 --variants base rnorm combo fast-ln-amin-ema
    .venv/bin/python benchmarks/sac_recipes.py --env manip4 --variants base ensemble-bf16 --seeds 0   # harder set

Writes ``OUT/table.md`` (final and best success, env steps and steps/s per variant) and
``OUT/curves.png`` (mean success against wall-clock minutes and against env steps).
Run nothing else on the machine meanwhile: the comparison is in wall-clock time. Each run starts at
``nice -10`` where permitted and its row records the mean 1-minute load average (``load_avg``, over
every part of a resumed run), so that a run that shared the machine shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from runlock import run_once

ROOT = Path(__file__).resolve().parent.parent
# Every variant starts from the CPU recipe a user reaches for first (the one-hour run:
# 256x2 trunks, one update per two vector steps, ~6x the update rate of the MT-SAC paper's 400x3
# at utd 1, which reaches only ~40k env steps in 15 minutes on 2 cores); ``paper400`` is
# agents/mtsac.yaml as is, for reference. The categorical critic's support is [-10, 10]: it needs
# rewards on that scale, so it comes with max_return normalisation (v_max = 10), as in BRC.
# BroNet is 256 wide with one residual block here (BRO's 512 x 2 costs ~3x the MLP critic on a CPU).
CPU = ["sac.hidden=[256,256]", "sac.utd=0.5"]
BRONET = ["sac.critic=bronet", "sac.critic_width=256", "sac.critic_blocks=1"]
CATEGORICAL = ["reward_norm=max_return", "sac.critic_loss=categorical", "sac.target=mean"]
VARIANTS: dict[str, list[str]] = {
    "base": CPU,
    "rnorm": [*CPU, "reward_norm=max_return"],
    "bronet": [*CPU, *BRONET],
    "categorical": [*CPU, *CATEGORICAL],
    "embed": [*CPU, "sac.task_embedding=32"],
    "utd1": [*CPU, "sac.utd=1"],
    "threads2": [*CPU, "threads=2"],
    "combo": [*CPU, *BRONET, *CATEGORICAL, "sac.task_embedding=32", "sac.weight_decay=0.0001", "threads=2"],
    "paper400": [],
    # Is it sharing? one whole network per task (4 single-task SACs updated together), and multi-head
    "ensemble": [*CPU, "sac.heads=ensemble"],
    "multihead": [*CPU, "sac.heads=multi"],
    # 200-step episodes (BRC's setting): more resets, more of each episode spent near the start
    "ep200": [*CPU, "max_episode_steps=200"],
    # the ensemble with bfloat16 GEMMs in the update (~1.35x the updates per second on this CPU)
    "ensemble-bf16": [*CPU, "sac.heads=ensemble", "sac.precision=bf16"],
    # per-task networks with per-task reward scales (the critic's targets ~10 instead of ~1,000)
    "ensemble-bf16-rnorm": [*CPU, "sac.heads=ensemble", "sac.precision=bf16", "reward_norm=max_return"],
    # the ensemble keeping every transition of a one-hour run (1M per task instead of 100k): the hard
    # tasks were learned and lost once their buffers held only the last ~100k steps
    "ensemble-bf16-buf1m": [*CPU, "sac.heads=ensemble", "sac.precision=bf16", "sac.buffer_per_task=1000000"],
    # The fast-* variants are ensemble-bf16-buf1m with precision auto (bf16 only on a CPU with bfloat16
    # instructions; sessions 6-8 ran on one, session 9's AMD EPYC has none) plus changes; since
    # session 10 agents/mtsac-fast.yaml is fast-ln-amin-ema (3 seeds).
    # fast-ent2: a higher entropy target (-|A|/2 instead of -|A|): on seed 1 window-open's temperature fell to 0.01 by 130k steps and its policy's entropy
    # to -14 (the other tasks at -4) before the task was lost; more entropy keeps more exploration
    "fast-ent2": [*CPU, "sac.heads=ensemble", "sac.precision=auto", "sac.buffer_per_task=1000000",
                  "sac.target_entropy=-2"],
    # ... or with a LayerNorm before each hidden activation of every per-task critic (RLPD): on seed 1
    # window-open's critic loss rose from ~1 to 20-50 while the task was lost, and button-press-
    # topdown's Q rose steadily to 313 with no success (over-estimation off the data)
    "fast-ln": [*CPU, "sac.heads=ensemble", "sac.precision=auto", "sac.buffer_per_task=1000000",
                "sac.critic_layer_norm=true"],
    # ... and a floor under each task's temperature: in fast-ln seed 1 window-open's alpha fell from
    # 1 to 0.024 while its critic was still flat (policy entropy ~2.7, near uniform), then to 0.008
    # as the policy collapsed to entropy -4.5 within 30k steps and the task was lost (0.9 -> 0.0);
    # the floor is the alpha at which the critic started to take shape, rounded up
    "fast-ln-amin": [*CPU, "sac.heads=ensemble", "sac.precision=auto", "sac.buffer_per_task=1000000",
                     "sac.critic_layer_norm=true", "sac.alpha_min=0.03"],
    # ... evaluated with a Polyak average of the actor (rate 0.001 per update: ~1,000 updates, ~8k
    # env steps): it trains exactly as fast-ln-amin (same seed, same trajectory), so the pair is a
    # paired comparison of the online and the averaged policy
    "fast-ln-amin-ema": [*CPU, "sac.heads=ensemble", "sac.precision=auto", "sac.buffer_per_task=1000000",
                         "sac.critic_layer_norm=true", "sac.alpha_min=0.03", "sac.actor_ema=0.001"],
    # CAMRL (issue 9) on the shipped recipe: agents/mtsac-fast-camrl.yaml, i.e. fast-ln-amin-ema
    # (= agents/mtsac-fast.yaml) with the camrl task scheduler; compare in env steps (--total-steps)
    # against fast-ln-amin-ema's curve, which has uniform task sampling
    "fast-camrl": [],
    # ... without the actor pull toward the B-weighted earlier tasks (R = 0): only CAMRL's schedule
    "fast-camrl-noreg": ["curriculum_args.reg_coef=0"],
    # ... with CAMRL's weights setting each task's share of env steps, not of episodes: a slot
    # keeps its task while the weights do not change (uniform: one fixed slot per task, as
    # without a curriculum), where per-episode draws balance the tasks only in expectation
    "fast-camrl-steps": ["task_share=steps"],
}
# Variants that start from another preset than agents/mtsac.yaml (their overrides go on top of it).
PRESETS: dict[str, str] = {v: "agents/mtsac-fast-camrl.yaml" for v in ("fast-camrl", "fast-camrl-noreg",
                                                                        "fast-camrl-steps")}
#: ``total_steps`` of a wall-clock run (stopped by SIGTERM long before it)
NO_STEP_LIMIT = 100_000_000


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def run_one(variant: str, seed: int, overrides: list[str], out: Path, minutes: float | None, eval_every: int,
            eval_episodes: int, env: str = "envs/reach4.yaml", total_steps: int = NO_STEP_LIMIT) -> dict:
    """One ``mtrl train ENV agents/mtsac.yaml`` run (``PRESETS`` names another preset for some
    variants): stopped by SIGTERM after ``minutes`` of wall-clock (None: when it reaches
    ``total_steps``); returns its result row.

    A time-budgeted run that was interrupted starts again (its wall-clock cannot be resumed
    fairly). A step-budgeted run (``minutes=None``) checkpoints at every evaluation with its replay
    buffer and, when the benchmark runs again with the same command, continues with ``mtrl train
    --resume`` from its newest intact checkpoint (the row's ``resumed_from`` lists the steps), so
    that a long run survives the end of a session: stop it with SIGTERM to this script (passed on)
    or to its ``mtrl.cli train`` process (it checkpoints and exits; no row is written for it).
    Meta-World env states are not checkpointed, so a resumed run starts fresh episodes there
    (ENV-NOTES). A time-budgeted run stopped that way writes no row either."""
    run_dir = out / "runs" / f"{variant}_s{seed}"
    preset = PRESETS.get(variant, "agents/mtsac.yaml")
    args = [env, preset, f"total_steps={total_steps}", f"seed={seed}", f"run_dir={run_dir}", f"eval_every={eval_every}",
            f"eval_episodes={eval_episodes}"]
    if minutes is not None:
        args += ["checkpoint_every=0", "log_every=20", *overrides]
    else:  # last: a resumable run checkpoints whatever the overrides say
        args += ["log_every=20", *overrides, f"checkpoint_every={eval_every}", "sac.save_buffer=true"]
    spec_path = run_dir / "benchmark_run.json"
    spec = json.loads(spec_path.read_text()) if spec_path.is_file() else {}
    if _alive(spec.get("pid"), run_dir):  # its benchmark was killed, its trainer was not
        sys.exit(f"{variant} seed {seed}: pid {spec['pid']} is still training in {run_dir}; stop it first "
                 f"(kill -TERM {spec['pid']}: it checkpoints) or wait for it")
    from mtrl import checkpoint

    resume_step = None
    if minutes is None and spec.get("args") == args and checkpoint.list_checkpoints(run_dir / "checkpoints"):
        resume_step = int(checkpoint.latest_intact(run_dir, trusted=True, with_env=True)[1]["step"])
        cmd = [sys.executable, "-m", "mtrl.cli", "train", "--resume", str(run_dir)]
        print(f"== {variant} seed {seed}: resuming {run_dir} from its checkpoint at step {resume_step:,}", flush=True)
    else:
        if run_dir.exists():  # an interrupted time-budgeted run, or one started with another command
            shutil.rmtree(run_dir)
        spec = {"args": args}
        cmd = [sys.executable, "-m", "mtrl.cli", "train", *args]
        print(f"== {variant} seed {seed}: {' '.join(overrides) or f'({preset} as is)'}", flush=True)
        run_dir.mkdir(parents=True)
    log = open(run_dir / "train.log", "a" if resume_step is not None else "w")
    # A higher priority (where allowed) keeps other work on the machine from eating the run's wall-clock.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: _try(os.nice, -10))
    spec_path.write_text(json.dumps({**spec, "pid": proc.pid}))
    # SIGTERM to this script (the end of a session) reaches the trainer, which checkpoints and exits.
    forward = threading.current_thread() is threading.main_thread()
    stopped = []

    def stop(*_) -> None:
        stopped.append(True)
        proc.send_signal(signal.SIGTERM)

    old_term = signal.signal(signal.SIGTERM, stop) if forward else None
    t0 = time.time()
    loads = []
    try:
        while proc.poll() is None and (minutes is None or time.time() - t0 < minutes * 60):
            time.sleep(2)
            loads.append(os.getloadavg()[0])
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
    finally:
        if forward:
            signal.signal(signal.SIGTERM, old_term)
    if stopped:
        print(f"{variant} seed {seed}: SIGTERM passed on to the trainer", flush=True)
    if proc.returncode != 0:
        sys.exit(f"{variant} seed {seed} failed (exit {proc.returncode}); see {run_dir / 'train.log'}")
    if resume_step is not None:
        spec["resumed_from"] = [*spec.get("resumed_from", []), resume_step]
    # the load average over every part of a resumed run, not only its last one: [sum, samples]
    load_sum, load_n = spec.get("load", [0.0, 0])
    spec["load"] = [load_sum + float(np.sum(loads)), load_n + len(loads)]
    spec_path.write_text(json.dumps(spec))
    if stopped and minutes is not None:  # a time-budgeted run cut short is no result
        sys.exit(f"{variant} seed {seed} stopped from outside before its {minutes} minutes; it starts again next time")
    if minutes is None:
        reached = json.loads((run_dir / "summary.json").read_text())["step"]
        if reached < total_steps:  # stopped from outside (SIGTERM): no row; the next call resumes it
            sys.exit(f"{variant} seed {seed} stopped at step {reached:,} of {total_steps:,}; run the benchmark "
                     "again to continue it")
        for buffer in (run_dir / "checkpoints").glob("replay_*.npz"):  # only a resume needs them
            buffer.unlink()
    hist = load(run_dir / "eval_history.jsonl")
    return {"variant": variant, "seed": seed, "minutes": minutes, "overrides": overrides, "env": env,
            "preset": preset, "total_steps": total_steps,
            "curve": [[h["step"], h["wall_s"], h["mean_success"]] for h in hist],
            "per_task_final": hist[-1]["success"] if hist else {},
            **returns_of(run_dir),
            **({"resumed_from": spec["resumed_from"]} if spec.get("resumed_from") else {}),
            "load_avg": spec["load"][0] / spec["load"][1] if spec["load"][1] else None,
            "cpus": os.cpu_count(), "cpu": _cpu_model()}


def _alive(pid: int | None, run_dir: Path) -> bool:
    """Whether process ``pid`` is alive and is the trainer of ``run_dir`` (not a recycled pid)."""
    try:
        return pid is not None and str(run_dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def returns_of(run_dir: Path) -> dict:
    """A run's evaluation returns for its result row: ``return_curve`` (``[step, mean over tasks]``)
    and ``per_task_return_final``; empty if it logged none."""
    from mtrl.compare import eval_returns

    ev = eval_returns(run_dir)
    if ev is None or not len(ev[0]) or not ev[1]:
        return {}
    steps, per_task = ev
    mean = np.nanmean(list(per_task.values()), axis=0)
    return {"return_curve": [[int(s), round(float(m), 2)] for s, m in zip(steps, mean)],
            "per_task_return_final": {t: round(float(v[-1]), 2) for t, v in per_task.items()}}


def _cpu_model() -> str:
    """The CPU's model name (runs on different machines are not comparable in wall-clock)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def _try(fn, *a) -> None:
    try:
        fn(*a)
    except OSError:  # not permitted: run at the default priority
        pass


def summarise(rows: list[dict], out: Path, title: str = "MT-SAC recipes on Meta-World reach4") -> dict:
    by: dict[str, list[dict]] = {}
    for r in rows:  # runs of another length are their own row: "rnorm (60 min)"
        minutes = r.get("minutes")
        steps = r.get("total_steps") or NO_STEP_LIMIT
        key = (f"{r['variant']} ({steps // 1000}k steps)" if minutes is None and steps < NO_STEP_LIMIT
               else r["variant"] if minutes in (None, 15) else f"{r['variant']} ({minutes:g} min)")
        by.setdefault(key, []).append(r)
    summary = {}
    for v, rs in by.items():
        curves = [np.asarray(r["curve"]) for r in rs if r["curve"]]
        summary[v] = {"seeds": len(rs),
                      "final": float(np.mean([c[-1, 2] for c in curves])),
                      "best": float(np.mean([c[:, 2].max() for c in curves])),
                      "env_steps": float(np.mean([c[-1, 0] for c in curves])),
                      "steps_per_s": float(np.mean([c[-1, 0] / max(c[-1, 1], 1e-9) for c in curves]))}
    lines = ["| variant | seeds | final success | best success | env steps | env steps/s (training) |",
             "|---|---|---|---|---|---|"]
    for v, s in summary.items():
        lines.append(f"| {v} | {s['seeds']} | {s['final']:.2f} | {s['best']:.2f} | {s['env_steps']:,.0f} | "
                     f"{s['steps_per_s']:.0f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plot_curves({v: [np.asarray(r["curve"], dtype=float) for r in rs if r["curve"]] for v, rs in by.items()},
                title, out / "curves.png")
    return summary


def plot_curves(curves: dict[str, list[np.ndarray]], title: str, path: Path, bold: tuple[str, ...] = ()) -> None:
    """Mean over seeds of success against wall-clock minutes (left) and env steps (right), one line
    per variant; ``curves`` holds ``[step, wall_s, success]`` arrays. Skipped without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for v, cs in curves.items():
        if not cs:
            continue
        for ax, col, scale in ((axes[0], 1, 60.0), (axes[1], 0, 1.0)):
            # from the first evaluation on: there is none at step 0, so nothing is drawn before it
            grid = np.linspace(max(c[0, col] for c in cs) / scale, min(c[-1, col] for c in cs) / scale, 40)
            ys = [np.interp(grid, c[:, col] / scale, c[:, 2]) for c in cs]
            ax.plot(grid, np.mean(ys, 0), label=f"{v} ({len(cs)})", lw=2.5 if v in bold else 1.2)
    axes[0].set_xlabel("training wall-clock (minutes)")
    axes[1].set_xlabel("env steps (all tasks)")
    for ax in axes:
        ax.set_ylabel("mean deterministic success")
        ax.set_ylim(-0.02, 1.02)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def at_steps(rows: list[dict], variants: list[str], steps: list[int], out: Path) -> str:
    """A comparison in env steps: per variant (each seed, then the mean), the deterministic success
    at each of ``steps`` and the mean over every evaluation from the first of them on (averaging
    the evaluation-to-evaluation swing); only runs whose curve reaches the last of ``steps``, one
    per seed.
    Written to ``OUT/table_steps.md``."""
    head = ["variant", "seed", *(f"at {s // 1000}k" for s in steps), f"mean of evaluations {steps[0] // 1000}k-{steps[-1] // 1000}k"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in variants:
        got = []
        longest: dict[int, dict] = {}  # one run per seed (a seed run twice, e.g. 15 and 25 minutes: the longer)
        for r in rows:
            if r["variant"] == v and (r["seed"] not in longest or len(r["curve"]) > len(longest[r["seed"]]["curve"])):
                longest[r["seed"]] = r
        for _, r in sorted(longest.items()):
            c = np.asarray(r["curve"])
            if not len(c) or c[-1, 0] < steps[-1]:
                continue
            vals = [float(c[c[:, 0] <= s][-1, 2]) for s in steps]
            window = c[(c[:, 0] >= steps[0]) & (c[:, 0] <= steps[-1]), 2]
            got.append([*vals, float(window.mean())])
            lines.append(f"| {v} | {r['seed']} | " + " | ".join(f"{x:.2f}" for x in got[-1]) + " |")
        if got:
            lines.append(f"| **{v}** | mean of {len(got)} | " + " | ".join(f"**{x:.2f}**" for x in np.mean(got, 0)) + " |")
    text = "\n".join(lines) + "\n"
    (out / "table_steps.md").write_text(text)
    return text


def at_minutes(rows: list[dict], variants: list[str], budget: float, out: Path, env: str = "reach4") -> str:
    """A comparison in wall-clock: every wall-clock run of ``variants`` cut at ``budget`` minutes of
    *training* time (``wall_s`` of its evaluations, which leaves out the evaluations themselves and
    start-up: a run stopped after 15 minutes from launch has its last evaluation at ~11.5-13
    training minutes, so cut the 15-minute ablation at 13). Per seed, the shortest run whose
    evaluations reach ``budget`` (else the longest run there is; the "last evaluation" column shows
    how far it got), so a 60-minute run counts with its first ``budget`` minutes. Per seed and as
    the mean over seeds: the success at the last evaluation within the budget, the best, the mean
    over the evaluations of the budget's last third (the evaluation-to-evaluation swing averaged
    out; ``-`` where none fell there), env steps reached and steps/s, and the CPU and load the run had.
    Writes ``OUT/table_<budget>min.md`` and ``OUT/curves_<budget>min.png`` (mean success against
    wall-clock minutes and against env steps, one line per variant)."""
    tag = f"{budget:g}min"
    head = ["variant", "seed", "success at budget", "best", f"mean of evaluations {budget * 2 / 3:.3g}-{budget:g} min",
            "env steps", "env steps/s", "last evaluation (training min)", "run length (min)", "load avg", "CPU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    curves: dict[str, list[np.ndarray]] = {}
    for v in variants:
        per_seed: dict[int, list[dict]] = {}
        for r in rows:
            if r["variant"] == v and r.get("minutes") is not None and r["curve"]:
                per_seed.setdefault(r["seed"], []).append(r)
        got = []
        for seed, rs in sorted(per_seed.items()):
            covering = [r for r in rs if r["curve"][-1][1] >= budget * 60]
            r = min(covering, key=lambda r: r["minutes"]) if covering else max(rs, key=lambda r: r["minutes"])
            c = np.asarray(r["curve"], dtype=float)
            c = c[c[:, 1] <= budget * 60]
            if not len(c):
                continue
            curves.setdefault(v, []).append(c)
            window = c[c[:, 1] >= budget * 40, 2]
            got.append([c[-1, 2], c[:, 2].max(), window.mean() if len(window) else np.nan, c[-1, 0],
                        c[-1, 0] / max(c[-1, 1], 1e-9)])
            load = f"{r['load_avg']:.1f}" if r.get("load_avg") is not None else "?"
            win = f"{got[-1][2]:.2f}" if len(window) else "-"
            lines.append(f"| {v} | {seed} | {got[-1][0]:.2f} | {got[-1][1]:.2f} | {win} | {got[-1][3]:,.0f} | "
                         f"{got[-1][4]:.0f} | {c[-1, 1] / 60:.1f} | {r['minutes']:g} | {load} | {r.get('cpu', '?')} |")
        if got:
            g = np.asarray(got)
            n_win = int(np.isfinite(g[:, 2]).sum())
            win = "-" if not n_win else f"**{np.nanmean(g[:, 2]):.2f}**" + (f" ({n_win} seeds)" if n_win < len(g) else "")
            m = g.mean(0)
            lines.append(f"| **{v}** | mean of {len(got)} | **{m[0]:.2f}** | **{m[1]:.2f}** | {win} | "
                         f"{m[3]:,.0f} | {m[4]:.0f} | | | | |")
    text = "\n".join(lines) + "\n"
    (out / f"table_{tag}.md").write_text(text)
    plot_curves(curves, f"MT-SAC recipes on {env}, first {budget:g} training minutes of each run",
                out / f"curves_{tag}.png", bold=tuple(v for v in curves if v.startswith("fast")))
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--minutes", type=float, default=15)
    p.add_argument("--total-steps", type=int, default=None,
                   help="stop each run at this many env steps instead of after --minutes (a comparison in "
                        "env steps, for runs that share the machine)")
    p.add_argument("--eval-every", type=int, default=20_000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--env", default="reach4", choices=["reach4", "manip4"], help="envs/<env>.yaml")
    p.add_argument("--out", default=None, help="default: benchmarks/results/sac_recipes (reach4), "
                                               "benchmarks/results/sac_recipes_<env> otherwise")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--at-steps", nargs="+", type=int, default=None,
                   help="also tabulate success at these env steps for --variants (OUT/table_steps.md)")
    p.add_argument("--at-minutes", type=float, default=None,
                   help="also tabulate and plot --variants cut at this many training minutes "
                        "(OUT/table_<M>min.md, OUT/curves_<M>min.png)")
    args = p.parse_args()
    out = Path(args.out or ROOT / ("benchmarks/results/sac_recipes" + ("" if args.env == "reach4" else f"_{args.env}")))
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    minutes = None if args.total_steps else args.minutes
    if not args.plot_only:
        for seed in args.seeds:  # seeds outermost: a partial ablation still compares every variant
            for v in args.variants:
                run_once(out, f"{v}_s{seed}",
                         lambda r, v=v, seed=seed: (r["variant"], r["seed"], r["minutes"]) == (v, seed, minutes)
                         and (not args.total_steps or r.get("total_steps") == args.total_steps),
                         lambda v=v, seed=seed: run_one(v, seed, VARIANTS[v], out, minutes, args.eval_every,
                                                        args.eval_episodes, env=f"envs/{args.env}.yaml",
                                                        total_steps=args.total_steps or NO_STEP_LIMIT))
    print(json.dumps(summarise(load(results), out, f"MT-SAC recipes on Meta-World {args.env}"), indent=2))
    if args.at_steps:
        print(at_steps(load(results), args.variants, sorted(args.at_steps), out))
    if args.at_minutes is not None:
        if args.at_minutes <= 0:
            p.error("--at-minutes must be positive")
        print(at_minutes(load(results), args.variants, args.at_minutes, out, env=args.env))


if __name__ == "__main__":
    main()
