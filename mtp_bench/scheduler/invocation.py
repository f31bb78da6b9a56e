"""The parent run of one ``mtp-bench run`` invocation: opened once the grid is known to be able to start, holding
the suite as given and as resolved, closed with the grid's outcome; and on ``--resume``, a still running invocation
of the suite refused (:func:`refuse_live_invocations`), and the parents of earlier invocations that were killed
(kill -9, a lost machine) closed out as KILLED, with their trials that never ended.

Whether an invocation still runs: its parent run carries the driver's host, pid and the pid's start time (a pid the
system gave to another process since is not it); beside a SQLite store, every invocation also holds a lock
(:func:`mtp_bench.tracking.retry.invocation_lock`) that the kernel drops when it dies.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from mtp_bench import tracking
from mtp_bench.errors import InvocationRunning
from mtp_bench.suite.config import SuiteConfig
from mtp_bench.tracking import tags as T

_SAME_START_S = 1.0  # a process's start time as recorded and as read again agree to well within this


def process_started(pid: int) -> float | None:
    """When process ``pid`` of this host started (epoch seconds); None if there is no such process. A process of
    another user whose start time cannot be read counts as started at an unknown time: ``nan``."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:
        return float("nan")


def driver_alive(tags: dict[str, str]) -> bool | None:
    """Whether the driver that opened a parent run (its tags) still runs: True, False, or None when this host cannot
    tell (another host, no pid recorded). This process's own earlier invocations have ended (one runs at a time)."""
    pid = tags.get(T.TAG_PID, "")
    if tags.get(T.TAG_HOST) != socket.gethostname() or not pid.isdigit():
        return None
    if int(pid) == os.getpid():
        return False
    started = process_started(int(pid))
    if started is None:
        return False
    recorded = tags.get(T.TAG_PID_STARTED)
    if recorded is None or started != started:  # an older record, or a start time we may not read: the pid decides
        return True
    try:
        return abs(started - float(recorded)) < _SAME_START_S
    except ValueError:
        return True


def open_invocation(tracker: Any, suite: SuiteConfig, n_trials: int, *, resume: bool, scheduler: str,
                    suite_yaml: str | None, overrides: list[str] | tuple[str, ...]) -> str:
    """A new parent run with the raw ``suite.yaml``, the suite as resolved (``${VAR}``, ``overrides``, validation:
    ``suite.resolved.yaml``) and the overrides (a JSON list)."""
    import yaml

    parent_id = tracker.start_run(
        f"{suite.name} ({n_trials} trials)",
        {T.TAG_KIND: T.KIND_INVOCATION, T.TAG_SUITE: suite.name, T.TAG_RESUME: str(resume),
         T.TAG_OVERRIDES: json.dumps(list(overrides)), T.TAG_HOST: socket.gethostname(), T.TAG_PID: str(os.getpid()),
         T.TAG_PID_STARTED: repr(process_started(os.getpid()))},
    )
    if suite.tracking.log_artifacts:
        if suite_yaml is not None:
            tracker.log_text(parent_id, suite_yaml, "suite.yaml")
        resolved = yaml.safe_dump(suite.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        tracker.log_text(parent_id, resolved, "suite.resolved.yaml")
    tracker.log_params(parent_id, {"suite": suite.name, "trials": str(n_trials), "scheduler": scheduler})
    return parent_id


def refuse_live_invocations(tracker: Any, suite: SuiteConfig, lock_free: bool) -> None:
    """Raise :class:`InvocationRunning` when an invocation of this suite still runs on this host (its parent run's
    driver is alive), or when ``lock_free`` is False (another invocation holds the lock beside the SQLite store)."""
    store = suite.tracking.uri
    for run in tracker.invocation_runs(suite.name, status=tracking.RUNNING):
        tags = run.data.tags
        if driver_alive(tags):
            pid = tags[T.TAG_PID]
            raise InvocationRunning(
                f"suite {suite.name!r} is still running into {store} (pid {pid} on {tags[T.TAG_HOST]}, parent run "
                f"{run.info.run_id}): --resume would train its running trials a second time; wait for it to end, or "
                f"stop it (kill -INT {pid}), then --resume")
    if not lock_free:
        raise InvocationRunning(
            f"suite {suite.name!r} is still running into {store} (another invocation holds its lock beside the "
            "store): --resume would train its running trials a second time; wait for it to end, or stop it, then "
            "--resume")


def close_stale_invocations(tracker: Any, suite: SuiteConfig, closed_by: str) -> list[str]:
    """Mark KILLED the RUNNING parent runs of this suite whose driver is gone: started on this host by a process
    that no longer exists, or whose pid now belongs to a process started at another time (a driver on another
    machine cannot be checked, and is left alone). Their trial runs still RUNNING are marked KILLED too
    (``--resume`` continues them). Returns the parent run ids closed."""
    closed = []
    for run in tracker.invocation_runs(suite.name, status=tracking.RUNNING):
        tags = run.data.tags
        if run.info.run_id == closed_by or driver_alive(tags) is not False:
            continue
        for child in tracker.trial_runs(suite=suite.name):
            if child.info.status == tracking.RUNNING and child.data.tags.get(T.TAG_INVOCATION) == run.info.run_id:
                tracker.finish(child.info.run_id, tracking.KILLED)
        tracker.set_tags(run.info.run_id, {T.TAG_CLOSED_BY: closed_by})
        tracker.finish(run.info.run_id, tracking.KILLED)
        closed.append(run.info.run_id)
    return closed


def close_invocation(tracker: Any, parent_id: str, reports: list[Any], lock_retries: int) -> list[str]:
    """Attach the trials' reports, the failure count and (when any) the lock retries; FINISHED unless a trial
    failed. The status is written whatever happened to the rest (a full disk may refuse the artifact), and raises
    if it cannot be; returns what else could not be written, in words."""
    from mtp_bench.tracking.health import describe_store_error

    failed = sum(r.status == "FAILED" for r in reports)
    closing = {T.TAG_FAILED_TRIALS: str(failed)}
    if lock_retries:
        closing[T.TAG_LOCK_RETRIES] = str(lock_retries)
    problems = []
    for what, write in (("trials.json", lambda: tracker.log_dict(parent_id, [vars(r) for r in reports], "trials.json")),
                        ("its tags", lambda: tracker.set_tags(parent_id, closing))):
        try:
            write()
        except Exception as exc:  # noqa: BLE001 - the status below matters more; the caller says what is missing
            problems.append(f"{what} of parent run {parent_id}: {describe_store_error(exc)}")
    tracker.finish(parent_id, tracking.FAILED if failed else tracking.FINISHED)
    return problems
