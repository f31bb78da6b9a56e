"""The makespan benchmark (:mod:`mtp_bench.bench.makespan`) as a part of ``mtp-bench bench`` (``--parts makespan``;
not in the default set: it starts a local Ray and its trials load the machine for minutes)."""

from __future__ import annotations

import os

from mtp_bench.bench.common import RunContext, Settings
from mtp_bench.bench.report import Section


def run(settings: Settings) -> Section:
    from mtp_bench.bench.makespan import measure, section

    sizes = settings.sizes
    context = RunContext.begin(settings)
    workers = min(os.cpu_count() or 1, 2) if sizes.quick else (os.cpu_count() or 1)
    return section(measure(sizes.makespan_trials, workers, sizes.makespan_steps), context.end())
