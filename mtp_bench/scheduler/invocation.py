"""The parent run of one ``mtp-bench run`` invocation: opened once the grid is known to be able to start, holding
the suite as given and as resolved, closed with the grid's outcome; and on ``--resume``, the parents of earlier
invocations that were killed (kill -9, a lost machine) closed out as KILLED, with their trials that never ended."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from mtp_bench import tracking
from mtp_bench.suite.models import SuiteConfig
from mtp_bench.tracking import tags as T


def open_invocation(tracker: Any, suite: SuiteConfig, n_trials: int, *, resume: bool, scheduler: str,
                    suite_yaml: str | None, overrides: list[str] | tuple[str, ...]) -> str:
    """A new parent run with the raw ``suite.yaml``, the suite as resolved (``${VAR}``, ``overrides``, validation:
    ``suite.resolved.yaml``) and the overrides (a JSON list)."""
    import yaml

    parent_id = tracker.start_run(
        f"{suite.name} ({n_trials} trials)",
        {T.TAG_KIND: T.KIND_INVOCATION, T.TAG_SUITE: suite.name, T.TAG_RESUME: str(resume),
         T.TAG_OVERRIDES: json.dumps(list(overrides)), T.TAG_HOST: socket.gethostname(), T.TAG_PID: str(os.getpid())},
    )
    if suite.tracking.log_artifacts:
        if suite_yaml is not None:
            tracker.log_text(parent_id, suite_yaml, "suite.yaml")
        resolved = yaml.safe_dump(suite.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        tracker.log_text(parent_id, resolved, "suite.resolved.yaml")
    tracker.log_params(parent_id, {"suite": suite.name, "trials": str(n_trials), "scheduler": scheduler})
    return parent_id


def close_stale_invocations(tracker: Any, suite: SuiteConfig, closed_by: str) -> list[str]:
    """Mark KILLED the RUNNING parent runs of this suite whose driver is gone: started on this host by a process
    that no longer exists (a driver on another machine cannot be checked, and is left alone). Their trial runs
    still RUNNING are marked KILLED too (``--resume`` reopens them). Returns the parent run ids closed."""
    host = socket.gethostname()
    closed = []
    for run in tracker.invocation_runs(suite.name, status=tracking.RUNNING):
        tags = run.data.tags
        if run.info.run_id == closed_by or tags.get(T.TAG_HOST) != host or _alive(tags.get(T.TAG_PID)):
            continue
        for child in tracker.trial_runs(suite=suite.name):
            if child.info.status == tracking.RUNNING and child.data.tags.get(T.TAG_INVOCATION) == run.info.run_id:
                tracker.finish(child.info.run_id, tracking.KILLED)
        tracker.set_tags(run.info.run_id, {T.TAG_CLOSED_BY: closed_by})
        tracker.finish(run.info.run_id, tracking.KILLED)
        closed.append(run.info.run_id)
    return closed


def _alive(pid: str | None) -> bool:
    """Whether process ``pid`` exists on this host (unknown pids count as alive: never close what we cannot
    check)."""
    if not pid or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def close_invocation(tracker: Any, parent_id: str, reports: list[Any], lock_retries: int) -> None:
    """Attach the trials' reports, the failure count and (when any) the lock retries; FINISHED unless a trial
    failed."""
    tracker.log_dict(parent_id, [vars(r) for r in reports], "trials.json")
    failed = sum(r.status == "FAILED" for r in reports)
    closing = {T.TAG_FAILED_TRIALS: str(failed)}
    if lock_retries:
        closing[T.TAG_LOCK_RETRIES] = str(lock_retries)
    tracker.set_tags(parent_id, closing)
    tracker.finish(parent_id, tracking.FAILED if failed else tracking.FINISHED)
