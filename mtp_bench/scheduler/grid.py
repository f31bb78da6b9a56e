"""Running a suite's grid (:func:`run_suite`): check the stores and that the grid can start, open the parent MLflow
run, choose the scheduler, and close the invocation with its outcome (:class:`SuiteOutcome`)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mtp_bench.scheduler.reports import TrialReport
from mtp_bench.suite.config import SuiteConfig, TrialConfig


@dataclass
class SuiteOutcome:
    parent_run_id: str
    reports: list[TrialReport]
    lock_retries: int = 0  # store writes retried because SQLite was locked, driver and trials together
    closed_stale: list[str] | None = None  # parent runs of killed invocations that --resume closed as KILLED


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM handled like Ctrl-C inside the block: batch schedulers (Slurm, Kubernetes, ``timeout``) stop a job
    with SIGTERM, and the unfinished trials must then be recorded KILLED for ``--resume``, not left RUNNING.
    ``ray.init`` installs its own handler (a bare exit that records nothing): :func:`~.ray_scheduler.connect` puts
    this one back. The handler found on entry is restored on exit."""
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


def _stopped(exc: BaseException, tracker: Any, parent_id: str | None, uri: str) -> None:
    """The grid stopped early: an interruption (Ctrl-C, SIGTERM) records the parent KILLED and goes on; a store that
    failed (a full disk) becomes one :class:`StoreWriteError` naming the runs left RUNNING; anything else goes on as
    it is, the parent KILLED."""
    from mtp_bench import tracking
    from mtp_bench.errors import StoreWriteError
    from mtp_bench.tracking.health import describe_store_error, is_store_failure

    closed = parent_id is None
    if parent_id is not None and tracker is not None:
        with contextlib.suppress(Exception):  # the store may be what failed
            tracker.finish(parent_id, tracking.KILLED if not isinstance(exc, Exception) else tracking.FAILED)
            closed = True
    if not isinstance(exc, Exception) or not is_store_failure(exc):
        raise exc
    open_runs = []
    if parent_id is not None and tracker is not None:
        with contextlib.suppress(Exception):  # reading may still work where writing does not
            open_runs = [r.info.run_id for r in tracker.trial_runs() if r.info.status == tracking.RUNNING
                         and r.data.tags.get(tracking.TAG_INVOCATION) == parent_id]
    left = ([] if closed else [f"the parent run {parent_id}"]) + ([f"{len(open_runs)} trial run(s)"] if open_runs
                                                                  else [])
    after = (f"{' and '.join(left)} could not be closed and stay RUNNING; once the store is writable, `--resume` "
             "closes them (KILLED) and reruns what did not finish" if left else
             "every run of this invocation is closed; `--resume` reruns what did not finish")
    raise StoreWriteError(f"the store {uri} failed mid-run: {describe_store_error(exc)}; {after}") from None


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
) -> SuiteOutcome:
    """Run every trial under one parent run (a new one per invocation) and return their reports. The stores are
    checked first (:func:`~mtp_bench.tracking.health.check_store`: a store that cannot be written raises
    :class:`~mtp_bench.errors.StoreError` before anything starts); then Ray is started and the grid
    checked against it: a grid that cannot start raises :class:`SchedulingError` and leaves no run behind. With
    ``resume``, a still running invocation of the suite is refused and parents of killed earlier invocations are
    closed as KILLED. SIGTERM stops it as Ctrl-C does (:func:`sigterm_as_interrupt`), from Ray's start on. A store
    that fails mid-run (a full disk) raises :class:`~mtp_bench.errors.StoreWriteError` saying which runs
    could not be closed."""
    from mtp_bench import tracking
    from mtp_bench.scheduler.invocation import (
        close_invocation,
        close_stale_invocations,
        open_invocation,
        refuse_live_invocations,
    )
    from mtp_bench.tracking.health import check_store
    from mtp_bench.tracking.retry import invocation_lock

    tracking.configure_quiet()
    experiment = suite.tracking.experiment or suite.name
    for uri, name in sorted({(suite.tracking.uri, experiment)} | {(t.tracking.uri, t.tracking.experiment or t.suite)
                                                                  for t in trials}):
        check_store(uri, write=True, experiment=name)  # before Ray starts and before anything is written
    retries_before = tracking.lock_retries()
    session = tracker = parent_id = None
    with sigterm_as_interrupt(), invocation_lock(suite.tracking.uri, f"{experiment}/{suite.name}",
                                                 exclusive=resume) as lock_free:
        try:
            if resume:  # before Ray starts: a live invocation of the suite refuses the resume
                tracker = tracking.Tracker(suite.tracking.uri, experiment)
                refuse_live_invocations(tracker, suite, lock_free)
            if use_ray and trials:
                from mtp_bench.scheduler.ray_scheduler import RaySession

                session = RaySession(trials, address)  # raises SchedulingError before anything is recorded
            tracker = tracker or tracking.Tracker(suite.tracking.uri, experiment)
            parent_id = open_invocation(tracker, suite, len(trials), resume=resume, suite_yaml=suite_yaml,
                                        overrides=overrides, scheduler="ray" if use_ray else "in-process")
            closed = close_stale_invocations(tracker, suite, parent_id) if resume else []
            if resume and console is not None:
                _say_mixed_commits(tracker, suite, trials, console)
            if session is not None:
                reports = session.run(parent_id=parent_id, resume=resume, console=console)
            else:
                from mtp_bench.scheduler.inprocess import run_in_process

                reports = run_in_process(trials, parent_id=parent_id, resume=resume)
            # Ray trials count their retries in their own processes; in-process trials count in ours.
            retries = tracking.lock_retries() - retries_before + (sum(r.lock_retries for r in reports)
                                                                 if session else 0)
            unwritten = close_invocation(tracker, parent_id, reports, retries)
        except BaseException as exc:
            _stopped(exc, tracker, parent_id, suite.tracking.uri)  # raises
        finally:
            if session is not None:
                session.close()
    if console is not None and closed:
        console.print(f"closed {len(closed)} parent run(s) of killed earlier invocations as KILLED")
    if console is not None and unwritten:
        console.print(f"[yellow]not recorded: {'; '.join(unwritten)}[/]")
    if console is not None and retries:
        console.print(f"[yellow]{retries} store writes were retried because the SQLite store was locked[/] (tag "
                      f"{tracking.TAG_LOCK_RETRIES} of the parent run); many retries slow trials down: a tracking "
                      "server (mlflow server) serves parallel writers better")
    return SuiteOutcome(parent_id, reports, retries, closed)
