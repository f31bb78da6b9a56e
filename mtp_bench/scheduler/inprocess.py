"""Run trials one after another in this process: for debugging (``mtp-bench run --no-ray``) and tests."""

from __future__ import annotations

import socket
from collections.abc import Callable

import torch

from mtp_bench.scheduler.attempt import execute_trial
from mtp_bench.scheduler.reports import FAILED, TrialReport
from mtp_bench.scheduler.worker import torch_threads
from mtp_bench.suite.config import TrialConfig


def run_in_process(
    trials: list[TrialConfig],
    *,
    parent_id: str | None,
    resume: bool,
    on_report: Callable[[TrialReport], None] | None = None,
) -> list[TrialReport]:
    reports = []
    host = socket.gethostname()
    default_threads = torch.get_num_threads()
    for trial in trials:
        # As many threads as under Ray (train.torch_threads, else resources.cpus_per_trial): the thread count can
        # change a trial's rounding, so a trial computes the same numbers whichever scheduler runs it.
        torch.set_num_threads(torch_threads(trial, trial.resources.cpus_per_trial) or default_threads)
        for attempt in range(trial.resources.max_retries + 1):
            # Within an invocation a retry reopens the same run (found by its parent); without a parent, say so.
            report = execute_trial(trial, parent_id=parent_id, resume=resume or (attempt > 0 and parent_id is None),
                                   node=host)
            if report.status != FAILED:
                break
        reports.append(report)
        if on_report is not None:
            on_report(report)
    torch.set_num_threads(default_threads)
    return reports
