"""Run trials one after another in this process: for debugging (``mtp-bench run --no-ray``) and tests."""

from __future__ import annotations

import socket
from collections.abc import Callable

from mtp_bench.scheduler.common import FAILED, TrialReport, execute_trial
from mtp_bench.suite.models import TrialConfig


def run_in_process(
    trials: list[TrialConfig],
    *,
    parent_id: str | None,
    resume: bool,
    on_report: Callable[[TrialReport], None] | None = None,
) -> list[TrialReport]:
    reports = []
    host = socket.gethostname()
    for trial in trials:
        attempts = trial.resources.max_retries + 1
        for attempt in range(attempts):
            report = execute_trial(trial, parent_id=parent_id, resume=resume or attempt > 0, node=host)
            if report.status != FAILED:
                break
        reports.append(report)
        if on_report is not None:
            on_report(report)
    return reports
