"""Makespan benchmark (also the ``makespan`` part of ``mtp-bench bench``): N equal tiny trials on K CPU workers
through the Ray scheduler, against the ideal
``sum(trial durations) / K`` of a scheduler with no overhead and perfect packing.

The ratio (1.0 is ideal) measures what scheduling costs: starting the pool's worker processes and their imports
(torch, transformers, MLflow: once per worker, not per trial), opening the store, the gap between one trial and the
next in a worker, and waiting between waves. A trial's duration is its own wall time in its worker (opening its
MLflow run to finishing it), so the ratio is measured in one run on one machine.

    python -m mtp_bench.bench.makespan --trials 8 --workers 2 --steps 200
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mtp_bench.bench.context import RunContext, Settings
from mtp_bench.bench.report import Section, Table
from mtp_bench.bench.sizes import FULL

DEFAULT_OUT = Path("results/makespan.md")
GOAL_RATIO = 1.3  # makespan / ideal (issue 19)
GOAL_OVERHEAD_S = 2.0  # seconds of overhead per trial
TITLE = "# Makespan benchmark"
PREAMBLE = ("Written by `python -m mtp_bench.bench.makespan`; the same measurement as the makespan section of "
            "`results/benchmarks.md` (`mtp-bench bench --parts makespan`, which runs "
            f"{FULL.makespan_trials} trials of {FULL.makespan_steps} steps).")


def build_trials(n: int, steps: int, workdir: Path) -> list[Any]:
    """N trials that differ only in their seed: NTP on a micro Llama learning addition, with a short evaluation."""
    from mtp_bench.suite import expand_grid
    from mtp_bench.suite.load import validate_suite

    suite = validate_suite({
        "name": "makespan",
        "model": {"preset": "micro-llama"},
        "data": {"task": "addition", "params": {"digits": 3, "train_size": 4000, "test_size": 200},
                 "eval_limit": 32},
        "methods": [{"name": "ntp"}],
        "train": {"max_steps": steps, "lr": 1e-3, "batch_size": 16, "max_length": 32, "log_every": 10,
                  "progress": False, "checkpoint": False, "torch_threads": 1},
        "evaluation": {"scorers": [{"name": "exact_match"}], "max_new_tokens": 6, "batch_size": 32},
        "grid": {"seeds": list(range(n))},
        "tracking": {"uri": f"sqlite:///{workdir / 'mlflow.db'}", "workdir": str(workdir / "trials"),
                     "log_artifacts": False},
        "resources": {"cpus_per_trial": 1},
    })
    suite.tracking.uri = f"sqlite:///{workdir / 'mlflow.db'}"  # a throwaway store, whatever MLFLOW_TRACKING_URI says
    return expand_grid(suite)


WARMUP_PROBE = """
import json, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
stages = []
def stage(name, load):
    c, w = cpu(), time.perf_counter()
    load()
    stages.append([name, cpu() - c, time.perf_counter() - w])
stage("Python and Ray (a Ray worker process has these before the pool uses it)", lambda: __import__("ray"))
stage("torch", lambda: __import__("torch"))
def trial():
    import mtp_bench.trial  # the loop, evaluation, transformers
    from mtp_bench.suite.config import TrialConfig
    from mtp_bench.trial.build import preload
    preload(TrialConfig.model_validate(json.loads(sys.argv[2])))
stage("transformers, mtp-bench's loop and the trial's plugins", trial)
def store():
    from mtp_bench.tracking import Tracker
    Tracker(sys.argv[1], "makespan")
stage("MLflow and opening the SQLite store", store)
print(json.dumps(stages))
"""


def warmup_breakdown(uri: str, trial: Any) -> list[tuple[str, float, float]]:
    """What one pool worker does before its first trial, stage by stage: (stage, CPU s, wall s), measured in a fresh
    Python process (the same imports, in the same order, as :class:`~mtp_bench.scheduler.trial_worker.TrialWorker`)
    against the grid's own (existing) store."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", WARMUP_PROBE, uri, trial.model_dump_json()], capture_output=True,
                         text=True, timeout=300, check=True)
    return [(name, cpu, wall) for name, cpu, wall in json.loads(out.stdout.strip().splitlines()[-1])]


def measure(n: int, workers: int, steps: int, breakdown: bool = False) -> dict[str, Any]:
    import ray

    from mtp_bench.scheduler.ray_scheduler import run_with_ray

    with tempfile.TemporaryDirectory(prefix="mtp-bench-makespan-") as tmp:
        trials = build_trials(n, steps, Path(tmp))
        started = time.perf_counter()
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
        ray_start = time.perf_counter() - started
        try:
            started, wall_start = time.perf_counter(), time.time()
            reports = run_with_ray(trials, parent_id=None, resume=False)
            makespan = time.perf_counter() - started
        finally:
            ray.shutdown()
        stages = warmup_breakdown(trials[0].tracking.uri, trials[0]) if breakdown else []
    failed = [r for r in reports if r.status != "FINISHED"]
    if failed:
        raise RuntimeError(f"{len(failed)} benchmark trials failed, e.g. {failed[0].label}: {failed[0].error}")
    durations = [r.seconds for r in reports]
    ideal = sum(durations) / workers
    first_wave = sorted(r.started_at for r in reports if r.started_at is not None)[:workers]
    return {
        "trials": n, "workers": workers, "steps": steps, "ray_start_s": ray_start, "makespan_s": makespan,
        "start_up_s": (first_wave[-1] - wall_start) if first_wave else math.nan,
        "sum_s": sum(durations), "median_trial_s": statistics.median(durations), "ideal_s": ideal,
        "ratio": makespan / ideal, "waves": math.ceil(n / workers),
        "overhead_per_trial_s": (makespan * workers - sum(durations)) / n, "warmup": stages,
    }


def section(results: list[dict[str, Any]], context: RunContext) -> Section:
    """The measurements as a benchmark section (the benchmark's own grid first, then longer ones), with the worker
    warm-up breakdown, the machine, versions, git commit and command under it."""
    rows = []
    for r in results:
        rows.append([str(r["trials"]), str(r["workers"]), f"{r['trials'] / r['workers']:g}", f"{r['makespan_s']:.1f}",
                     f"{r['sum_s']:.1f}", f"{r['ideal_s']:.1f}", f"**{r['ratio']:.2f}**",
                     f"{r['overhead_per_trial_s']:.1f}", f"{r['median_trial_s']:.1f}",
                     f"{r.get('start_up_s', math.nan):.1f}", f"{r['ray_start_s']:.1f}"])
    tables = [Table(["trials", "workers", "trials per worker", "makespan (s)", "sum of trial times (s)", "ideal (s)",
                     "makespan / ideal", "overhead per trial (s)", "median trial (s)",
                     "until every worker runs a trial (s)", "Ray start (s)"], rows)]
    stages = results[0].get("warmup") or []
    if stages:
        tables.append(Table(["worker warm-up stage", "CPU (s)", "wall (s)"],
                            [[name, f"{cpu:.2f}", f"{wall:.2f}"] for name, cpu, wall in stages]
                            + [["**total**", f"**{sum(c for _, c, _ in stages):.2f}**",
                                f"**{sum(w for _, _, w in stages):.2f}**"]]))
    r = results[0]
    return Section(
        key="makespan",
        title="Makespan of a grid on Ray",
        method=(
            f"Equal trials (NTP, micro Llama, addition, {r['steps']} steps + evaluation, 1 CPU and 1 torch thread "
            f"each) on a local Ray with {r['workers']} CPUs; the first row is the benchmark's own grid "
            f"({r['trials']} trials), later rows the same trials in longer grids (more trials per worker). "
            "Ideal = sum of the trials' own wall times / workers (a scheduler with no overhead and perfect packing); "
            "overhead per trial = (makespan × workers − sum) / trials: worker start-up and imports (once per worker "
            "process: the grid runs in a pool of long-lived workers), opening the store, plus idle time between "
            "trials and waves. Until every worker runs a trial: from the grid's start (Ray already up) to the start "
            "of the last first-wave trial's own timer. The second table is what one pool worker does before its "
            "first trial, measured stage by stage in a fresh Python process after the grid (same imports, same "
            "store)."
        ),
        tables=tables,
        reading=_reading(results),
        context=context,
    )


def _reading(results: list[dict[str, Any]]) -> str:
    """The figures against the goals (makespan <= 1.3x ideal, overhead <= 2 s a trial), and what bounds them."""
    r = results[0]
    ratio, overhead = r["ratio"], r["overhead_per_trial_s"]
    verdicts = [f"{ratio:.2f}× the ideal makespan (goal ≤ {GOAL_RATIO}: "
                + ("met" if ratio <= GOAL_RATIO else f"missed by {ratio - GOAL_RATIO:.2f}") + ")",
                f"{overhead:.1f} s of overhead per trial (goal ≤ {GOAL_OVERHEAD_S:g} s: "
                + ("met" if overhead <= GOAL_OVERHEAD_S else f"missed by {overhead - GOAL_OVERHEAD_S:.1f} s") + ")"]
    text = f"The benchmark's own grid took {verdicts[0]}, {verdicts[1]}."
    stages = r.get("warmup") or []
    if overhead > GOAL_OVERHEAD_S and stages:
        cpu = sum(c for _, c, _ in stages)
        text += (f" What bounds it is the start-up each worker pays once: {cpu:.1f} CPU-s of imports and store "
                 f"opening (table 2) before its first trial, {r.get('start_up_s', math.nan):.1f} s of wall time "
                 f"here with {r['workers']} workers and the driver sharing {r['workers']} cores; spread over "
                 f"{r['trials'] / r['workers']:g} trials a worker it cannot fall under {GOAL_OVERHEAD_S:g} s a trial "
                 f"while the trials themselves take {r['median_trial_s']:.1f} s.")
    for longer in results[1:]:
        text += (f" With {longer['trials'] / longer['workers']:g} trials a worker the same trials took "
                 f"{longer['ratio']:.2f}× the ideal, {longer['overhead_per_trial_s']:.1f} s of overhead per trial: "
                 "the pool pays its start-up once, so a longer grid spreads it thinner.")
    return text


def run(settings: Settings) -> Section:
    """The part of ``mtp-bench bench`` (``--parts makespan``; not in the default set: it starts a local Ray and its
    trials load the machine for minutes): 2 workers at most with ``--quick``, else every CPU. The benchmark's own
    grid, then (not with ``--quick``) the same trials with three times as many per worker."""
    sizes = settings.sizes
    context = RunContext.begin(settings)
    workers = min(os.cpu_count() or 1, 2) if sizes.quick else (os.cpu_count() or 1)
    results = [measure(sizes.makespan_trials, workers, sizes.makespan_steps, breakdown=True)]
    if not sizes.quick:
        results.append(measure(3 * sizes.makespan_trials, workers, sizes.makespan_steps))
    return section(results, context.end())


def command_line(args: argparse.Namespace) -> str:
    """The equivalent command, every choice spelled out (what reproduces the table)."""
    words = ["python", "-m", "mtp_bench.bench.makespan", "--trials", str(args.trials), "--workers",
             str(args.workers), "--steps", str(args.steps), "--out", str(args.out)]
    return shlex.join(words)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="makespan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8, help="equal trials in the grid (default 8)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps per trial (default 200)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"markdown report (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    sizes = replace(FULL, makespan_trials=args.trials, makespan_steps=args.steps)
    # Every trial runs with 1 torch thread (train.torch_threads in build_trials): that is what the machine line records.
    settings = Settings(sizes=sizes, device="cpu", threads=1, command=command_line(args))
    context = RunContext.begin(settings)
    result = measure(args.trials, args.workers, args.steps, breakdown=True)
    text = f"{TITLE}\n\n{PREAMBLE}\n\n{section([result], context.end()).markdown()}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"makespan / ideal = {result['ratio']:.2f}  (written to {args.out})")
    return 0


if __name__ == "__main__":  # errors are printed by the command line's entry point, as mtp-bench's are
    from mtp_bench.cli.entry import run_script

    raise SystemExit(run_script("makespan", main))
