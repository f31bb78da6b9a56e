"""The makespan benchmark (:mod:`mtp_bench.bench.makespan`) as a part of ``mtp-bench bench`` (``--parts makespan``;
not in the default set: it starts a local Ray and its trials load the machine for minutes)."""

from __future__ import annotations

import os

from mtp_bench.bench.common import RunContext, Settings
from mtp_bench.bench.report import Section, Table


def run(settings: Settings) -> Section:
    from mtp_bench.bench.makespan import measure

    sizes = settings.sizes
    context = RunContext.begin(settings)
    workers = min(os.cpu_count() or 1, 2) if sizes.quick else (os.cpu_count() or 1)
    r = measure(sizes.makespan_trials, workers, sizes.makespan_steps)
    table = Table(
        ["trials", "workers", "makespan (s)", "sum of trial times (s)", "ideal (s)", "makespan / ideal",
         "overhead per trial (s)", "median trial (s)", "Ray start (s)"],
        [[str(r["trials"]), str(r["workers"]), f"{r['makespan_s']:.1f}", f"{r['sum_s']:.1f}", f"{r['ideal_s']:.1f}",
          f"**{r['ratio']:.2f}**", f"{r['overhead_per_trial_s']:.1f}", f"{r['median_trial_s']:.1f}",
          f"{r['ray_start_s']:.1f}"]],
    )
    return Section(
        key="makespan",
        title="Makespan of a grid on Ray",
        method=(
            f"{r['trials']} equal trials (NTP, micro Llama, addition, {r['steps']} steps + evaluation, 1 CPU and 1 "
            f"torch thread each) on a local Ray with {r['workers']} CPUs ({r['waves']} waves). Ideal = sum of the "
            "trials' own wall times / workers (a scheduler with no overhead and perfect packing); overhead per trial "
            "= (makespan × workers − sum) / trials: worker start-up, imports and model build outside the trial's "
            "own timer, plus idle time between waves. Same measurement as `python -m mtp_bench.bench.makespan`."
        ),
        tables=[table],
        reading=f"The grid took {r['ratio']:.2f}× the ideal makespan (1.0 = scheduling costs nothing).",
        context=context.end(),
    )
