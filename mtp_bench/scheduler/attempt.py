"""What every scheduler does around a trial: find or open its MLflow run, decide skip/resume/retry, run it, and turn
any failure into a FAILED run with the error attached, never a crashed grid.

One trial has one MLflow run: a retry in the same invocation (same parent run) and a ``--resume`` from a later
invocation both reopen it, and the trial continues from ``workdir/checkpoint``. A resumed run moves to the resuming
invocation (its MLflow parent), and keeps the earlier ones in a tag.

Every step of a trial is recorded once. A reopened run continues from its checkpoint and skips the steps it holds
already; but an attempt that ended before its first checkpoint leaves nothing to continue from, and the next attempt
starts again at step 0: it gets a new run, and the old one is kept for the record, closed and retagged
``superseded`` (nothing reads it as the trial's result; :data:`~mtp_bench.tracking.tags.TAG_SUPERSEDED_BY` names
its successor). An interruption (Ctrl-C, SIGTERM) records the trial KILLED; an error, FAILED.
"""

from __future__ import annotations

import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtp_bench import tracking
from mtp_bench.scheduler.reports import FINISHED, SKIPPED, TrialReport, new_report, short_error
from mtp_bench.suite.config import TrialConfig
from mtp_bench.tracking import tags as T
from mtp_bench.tracking.health import describe_store_error

# (trial, workdir, tracker, run id, on_metrics) -> final metrics. The default trains in this process.
RunFn = Callable[[TrialConfig, Path, Any, str, Callable[[dict[str, float], int], None] | None], dict[str, float]]


@dataclass
class OpenedRun:
    run_id: str
    done: bool  # already FINISHED: nothing to run
    attempt: int


def trial_workdir(trial: TrialConfig) -> Path:
    return Path(trial.tracking.workdir) / trial.suite / trial.trial_id


def trial_tags(trial: TrialConfig) -> dict[str, str]:
    return {
        T.TAG_KIND: T.KIND_TRIAL,
        T.TAG_SUITE: trial.suite,
        T.TAG_METHOD: trial.method.display_name,
        T.TAG_METHOD_NAME: trial.method.name,
        T.TAG_SEED: str(trial.seed),
        T.TAG_TRIAL_ID: trial.trial_id,
        T.TAG_CELL: " ".join(f"{k}={v}" for k, v in sorted(trial.cell.items())),
    }


def open_trial_run(tracker: Any, trial: TrialConfig, parent_id: str | None, resume: bool) -> OpenedRun:
    """The run to write into. A run this invocation opened before is a retry: reopened, checkpoint kept. With
    ``resume`` an earlier invocation's run of the same trial id is reused: skipped when FINISHED, reopened otherwise
    (its checkpoint continues it) and attached to this invocation. Otherwise a fresh run and a fresh workdir."""
    runs = tracker.trial_runs(trial.trial_id) if (resume or parent_id) else []
    ours = [r for r in runs if parent_id and r.data.tags.get(T.TAG_INVOCATION) == parent_id]
    if ours:
        run = ours[0]
        if run.info.status == FINISHED:
            return OpenedRun(run.info.run_id, True, int(run.data.tags.get(T.TAG_ATTEMPT, "1")))
        attempt = int(run.data.tags.get(T.TAG_ATTEMPT, "1")) + 1
        if not has_checkpoint(trial):
            return _supersede(tracker, trial, run, parent_id, attempt)
        tracker.reopen(run.info.run_id)
        tracker.set_tags(run.info.run_id, {T.TAG_ATTEMPT: str(attempt)})
        return OpenedRun(run.info.run_id, False, attempt)
    if resume and runs:
        finished = [r for r in runs if r.info.status == FINISHED]
        if finished:
            return OpenedRun(finished[0].info.run_id, True, 1)
        run = runs[0]
        if not has_checkpoint(trial):
            return _supersede(tracker, trial, run, parent_id, 1)
        tracker.reopen(run.info.run_id)
        tracker.set_tags(run.info.run_id, {T.TAG_INVOCATION: parent_id or "", T.TAG_ATTEMPT: "1",
                                           **_moved_to(run.data.tags, parent_id)})
        return OpenedRun(run.info.run_id, False, 1)
    return _fresh(tracker, trial, parent_id, 1)


def has_checkpoint(trial: TrialConfig) -> bool:
    """Whether the trial's workdir holds a checkpoint to continue from (what :func:`~mtp_bench.trial.run_trial`
    loads)."""
    from mtp_bench.train.checkpoint import has_checkpoint as found  # torch: only where trials run

    return found(trial_workdir(trial) / "checkpoint")


def _fresh(tracker: Any, trial: TrialConfig, parent_id: str | None, attempt: int,
           extra: dict[str, str] | None = None) -> OpenedRun:
    shutil.rmtree(trial_workdir(trial) / "checkpoint", ignore_errors=True)  # a fresh run must not inherit weights
    tags = {**trial_tags(trial), T.TAG_INVOCATION: parent_id or "", T.TAG_ATTEMPT: str(attempt), **(extra or {})}
    return OpenedRun(tracker.start_run(trial.label, tags, parent_id), False, attempt)


def _supersede(tracker: Any, trial: TrialConfig, old: Any, parent_id: str | None, attempt: int) -> OpenedRun:
    """A new run for an attempt that starts again at step 0 (the earlier one ended before its first checkpoint):
    the old run would otherwise hold those steps twice. The old run is retagged first (so that a crash in between
    never leaves two runs counting as the trial), then closed: FAILED if it was left RUNNING (its process was lost),
    else as it ended."""
    old_id = old.info.run_id
    tracker.set_tags(old_id, {T.TAG_KIND: T.KIND_SUPERSEDED})
    opened = _fresh(tracker, trial, parent_id, attempt, {T.TAG_SUPERSEDES: old_id})
    tracker.set_tags(old_id, {T.TAG_SUPERSEDED_BY: opened.run_id})
    if old.info.status == tracking.RUNNING:
        tracker.set_tags(old_id, {T.TAG_ERROR: "its attempt was lost before its first checkpoint; the trial "
                                               f"started again in run {opened.run_id}"})
        tracker.finish(old_id, tracking.FAILED)
    return opened


def _moved_to(tags: dict[str, str], parent_id: str | None) -> dict[str, str]:
    """Tags that make the resuming invocation a resumed run's parent, keeping the earlier parents on record."""
    old = tags.get(T.TAG_PARENT)
    if not parent_id or old == parent_id:
        return {}
    earlier = [p for p in tags.get(T.TAG_PREVIOUS_PARENTS, "").split(",") if p]
    if old and old not in earlier:
        earlier.append(old)
    return {T.TAG_PARENT: parent_id, **({T.TAG_PREVIOUS_PARENTS: ",".join(earlier)} if earlier else {})}


def finished_run(tracker: Any, trial: TrialConfig) -> Any | None:
    """The newest FINISHED run of this trial id, if any (what ``--resume`` skips)."""
    return next((r for r in tracker.trial_runs(trial.trial_id) if r.info.status == FINISHED), None)


def skipped_report(trial: TrialConfig, run: Any) -> TrialReport:
    report = new_report(trial, SKIPPED)
    report.run_id, report.metrics = run.info.run_id, dict(run.data.metrics)
    return report


def run_in_this_process(
    trial: TrialConfig, workdir: Path, tracker: Any, run_id: str,
    on_metrics: Callable[[dict[str, float], int], None] | None, progress: bool | None = None,
) -> dict[str, float]:
    from mtp_bench.trial import run_trial

    return run_trial(trial, workdir=workdir, tracker=tracker, run_id=run_id, progress=progress,
                     on_metrics=on_metrics).metrics


def execute_trial(
    trial: TrialConfig,
    *,
    parent_id: str | None,
    resume: bool,
    progress: bool | None = None,
    node: str | None = None,
    run: RunFn | None = None,
    on_metrics: Callable[[dict[str, float], int], None] | None = None,
    on_open: Callable[[OpenedRun], None] | None = None,
    tracker: Any = None,
) -> TrialReport:
    """Run one trial (``run``: in this process by default, or data-parallel through Ray Train), recording it in its
    own MLflow run (through ``tracker`` when the caller already opened the store, e.g. a pool worker that runs many
    trials). Never raises for a failing trial, except to pass on a KeyboardInterrupt."""
    started = time.perf_counter()
    retries_before = tracking.lock_retries()
    report = new_report(trial, node=node)
    report.started_at = time.time()
    try:
        if tracker is None:
            tracker = tracking.Tracker(trial.tracking.uri, trial.tracking.experiment or trial.suite)
        opened = open_trial_run(tracker, trial, parent_id, resume)
    except (Exception, SystemExit) as exc:  # nothing is recorded: the report is all there is
        report.error = f"could not open the trial's run in {trial.tracking.uri}: {short_error(exc)}"
        return report
    report.run_id, report.attempt = opened.run_id, opened.attempt
    if opened.done:
        report.status, report.metrics = SKIPPED, tracker.metrics(opened.run_id)
        return report
    if on_open is not None:
        on_open(opened)
    try:
        # Where this attempt runs (CPU kernels, threads, library versions): what moves a trial's numbers.
        tracker.set_tags(opened.run_id, tracking.environment_tags())
        if run is None:
            metrics = run_in_this_process(trial, trial_workdir(trial), tracker, opened.run_id, on_metrics, progress)
        else:
            metrics = run(trial, trial_workdir(trial), tracker, opened.run_id, on_metrics)
    except BaseException as exc:  # noqa: BLE001 - a trial's failure is data, reported below
        report.error = short_error(exc)
        interrupted = isinstance(exc, KeyboardInterrupt)
        try:
            if interrupted:  # Ctrl-C or SIGTERM: KILLED, which --resume continues
                tracker.finish(opened.run_id, tracking.KILLED)
            else:
                tracker.fail(opened.run_id, "".join(traceback.format_exception(exc)))
        except Exception as tracking_error:  # the store itself failing must not hide the trial's error
            report.error += f" (and recording it failed: {describe_store_error(tracking_error)})"
        report.seconds = time.perf_counter() - started
        report.lock_retries = tracking.lock_retries() - retries_before
        if interrupted:
            raise
        return report
    try:
        tracker.finish(opened.run_id)
    except Exception as exc:  # noqa: BLE001 - trained and evaluated, but the store refuses the status (disk full)
        report.error = f"finished, but its run could not be closed: {describe_store_error(exc)}"
        report.seconds = time.perf_counter() - started
        return report
    report.status, report.metrics = FINISHED, metrics
    report.seconds = time.perf_counter() - started
    report.lock_retries = tracking.lock_retries() - retries_before
    return report
