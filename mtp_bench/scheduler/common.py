"""What every scheduler does around a trial: find or open its MLflow run, decide skip/resume, run it, and turn any
failure into a FAILED run with the error attached, never a crashed grid."""

from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtp_bench.suite.models import TrialConfig

FINISHED, FAILED, SKIPPED = "FINISHED", "FAILED", "SKIPPED"


@dataclass
class TrialReport:
    trial_id: str
    label: str
    method: str
    seed: int
    status: str
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    node: str | None = None  # where it ran (Ray node id or host name)


def trial_workdir(trial: TrialConfig) -> Path:
    return Path(trial.tracking.workdir) / trial.suite / trial.trial_id


def trial_tags(trial: TrialConfig) -> dict[str, str]:
    from mtp_bench import tracking

    return {
        tracking.TAG_KIND: "trial",
        tracking.TAG_SUITE: trial.suite,
        tracking.TAG_METHOD: trial.method.display_name,
        tracking.TAG_METHOD_NAME: trial.method.name,
        tracking.TAG_SEED: str(trial.seed),
        tracking.TAG_TRIAL_ID: trial.trial_id,
        "mtp_bench.cell": " ".join(f"{k}={v}" for k, v in sorted(trial.cell.items())),
    }


def open_trial_run(tracker: Any, trial: TrialConfig, parent_id: str | None, resume: bool) -> tuple[str | None, bool]:
    """(run id to write into, already finished?). With ``resume`` an earlier run of the same trial id is reused:
    skipped when FINISHED, reopened otherwise (its checkpoint continues it). Without, a fresh run and workdir."""
    workdir = trial_workdir(trial)
    if resume:
        runs = tracker.trial_runs(trial.trial_id)
        finished = [r for r in runs if r.info.status == "FINISHED"]
        if finished:
            return finished[0].info.run_id, True
        if runs:
            tracker.reopen(runs[0].info.run_id)
            return runs[0].info.run_id, False
    else:
        shutil.rmtree(workdir / "checkpoint", ignore_errors=True)  # a fresh run must not inherit old weights
    return tracker.start_run(trial.label, trial_tags(trial), parent_id), False


def finished_metrics(tracker: Any, run_id: str) -> dict[str, float]:
    return dict(tracker.client.get_run(run_id).data.metrics)


def execute_trial(
    trial: TrialConfig,
    *,
    parent_id: str | None,
    resume: bool,
    progress: bool | None = None,
    node: str | None = None,
) -> TrialReport:
    """Run one trial in this process, recording it in its own MLflow run. Never raises for a failing trial."""
    from mtp_bench.tracking import Tracker
    from mtp_bench.trial import run_trial

    started = time.perf_counter()
    report = TrialReport(trial.trial_id, trial.label, trial.method.display_name, trial.seed, FAILED, node=node)
    tracker = Tracker(trial.tracking.uri, trial.tracking.experiment or trial.suite)
    report.run_id, done = open_trial_run(tracker, trial, parent_id, resume)
    if done:
        report.status, report.metrics = SKIPPED, finished_metrics(tracker, report.run_id)
        return report
    try:
        outcome = run_trial(trial, workdir=trial_workdir(trial), tracker=tracker, run_id=report.run_id,
                            progress=progress)
    except BaseException as exc:  # noqa: BLE001 - a trial's failure is data, reported below
        report.error = f"{type(exc).__name__}: {exc}"
        try:
            tracker.fail(report.run_id, "".join(traceback.format_exception(exc)))
        except Exception as tracking_error:  # the store itself failing must not hide the trial's error
            report.error += f" (and recording the failure failed: {tracking_error})"
        if isinstance(exc, KeyboardInterrupt):
            raise
        report.seconds = time.perf_counter() - started
        return report
    tracker.finish(report.run_id)
    report.status, report.metrics = FINISHED, outcome.metrics
    report.seconds = time.perf_counter() - started
    return report
