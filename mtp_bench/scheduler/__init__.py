"""Running a suite's trials: check the grid can start, the parent MLflow run, the choice of scheduler, and the
outcome.

Schedulers know nothing about methods or metrics: they place trials and collect :class:`TrialReport`s.
"""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mtp_bench.scheduler.checks import RayStartError, SchedulingError
from mtp_bench.scheduler.reports import FAILED, FINISHED, SKIPPED, TrialReport
from mtp_bench.suite.models import SuiteConfig, TrialConfig

__all__ = ["FAILED", "FINISHED", "SKIPPED", "RayStartError", "SchedulingError", "SuiteRun", "TrialReport",
           "run_suite"]


@dataclass
class SuiteRun:
    parent_run_id: str
    reports: list[TrialReport]
    lock_retries: int = 0  # store writes retried because SQLite was locked, driver and trials together
    closed_stale: list[str] | None = None  # parent runs of killed invocations that --resume closed as KILLED


def ray_available() -> bool:
    return importlib.util.find_spec("mtp_bench.scheduler.ray_scheduler") is not None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM handled like Ctrl-C inside the block: batch schedulers (Slurm, Kubernetes, ``timeout``) stop a job
    with SIGTERM, and the unfinished trials must then be recorded KILLED for ``--resume``, not left RUNNING. Enter it
    after ``ray.init``, which installs its own handler (a bare exit that records nothing); the handler found on
    entry is restored on exit."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say_mixed_commits(tracker: Any, suite: SuiteConfig, trials: list[TrialConfig], console: Any) -> None:
    """Before a resumed grid starts: which other commits' runs it keeps (:mod:`.commits`)."""
    from mtp_bench.scheduler.commits import current_commit, mixed_commit_note, resumed_commits

    found = resumed_commits(tracker.trial_runs(suite=suite.name), {t.trial_id for t in trials})
    note = mixed_commit_note(found, current_commit())
    if note:
        console.print(f"[yellow]{note}[/]")


def run_suite(
    suite: SuiteConfig,
    trials: list[TrialConfig],
    *,
    use_ray: bool = True,
    resume: bool = False,
    address: str | None = None,
    suite_yaml: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    console: Any = None,
) -> SuiteRun:
    """Run every trial under one parent run (a new one per invocation) and return their reports. Ray is started
    and the grid checked against it first: a grid that cannot start raises :class:`SchedulingError` and leaves no
    run behind. With ``resume``, parents of killed earlier invocations are closed as KILLED. SIGTERM stops it as
    Ctrl-C does (:func:`sigterm_as_interrupt`)."""
    from mtp_bench import tracking
    from mtp_bench.scheduler.invocation import close_invocation, close_stale_invocations, open_invocation

    tracking.configure_quiet()
    retries_before = tracking.lock_retries()
    session = None
    if use_ray and trials:
        from mtp_bench.scheduler.ray_scheduler import RaySession

        session = RaySession(trials, address)  # raises SchedulingError before anything is recorded
    with sigterm_as_interrupt():  # after ray.init, which replaced the handler
        try:
            tracker = tracking.Tracker(suite.tracking.uri, suite.tracking.experiment or suite.name)
            parent_id = open_invocation(tracker, suite, len(trials), resume=resume, suite_yaml=suite_yaml,
                                        overrides=overrides, scheduler="ray" if use_ray else "in-process")
            closed = close_stale_invocations(tracker, suite, parent_id) if resume else []
            if resume and console is not None:
                _say_mixed_commits(tracker, suite, trials, console)
            try:
                if session is not None:
                    reports = session.run(parent_id=parent_id, resume=resume, console=console)
                else:
                    from mtp_bench.scheduler.inprocess import run_in_process

                    reports = run_in_process(trials, parent_id=parent_id, resume=resume)
            except BaseException:
                tracker.finish(parent_id, tracking.KILLED)
                raise
        finally:
            if session is not None:
                session.close()
    # Ray trials count their retries in their own processes; in-process trials count in ours.
    retries = tracking.lock_retries() - retries_before + (sum(r.lock_retries for r in reports) if session else 0)
    close_invocation(tracker, parent_id, reports, retries)
    if console is not None and closed:
        console.print(f"closed {len(closed)} parent run(s) of killed earlier invocations as KILLED")
    if console is not None and retries:
        console.print(f"[yellow]{retries} store writes were retried because the SQLite store was locked[/] (tag "
                      f"{tracking.TAG_LOCK_RETRIES} of the parent run); many retries slow trials down: a tracking "
                      "server (mlflow server) serves parallel writers better")
    return SuiteRun(parent_id, reports, retries, closed)
