"""Grids on Ray: trials run in a pool of long-lived worker actors (:mod:`~mtp_bench.scheduler.pool`), each holding
the resources the suite asks for, on a local Ray sized to the machine or on an existing cluster (``--address`` /
``RAY_ADDRESS``).

Why a pool of actors and not a Ray Tune trial per grid cell: a worker imports torch, transformers and MLflow once and
runs trial after trial, and starts warming up as soon as the grid is checked, while the driver still opens the store
and the parent run; Tune added seconds of start-up in the driver and in every trial process, for queueing, placement
and retries that the pool does in a page (Ray itself places the workers across nodes by their resources). A worker
runs :func:`~mtp_bench.scheduler.attempt.execute_trial` itself (one device) or drives a Ray Train ``TorchTrainer``
from it (several workers, :mod:`~mtp_bench.scheduler.ray_train`).

A :class:`RaySession` starts or joins Ray and checks the grid against the cluster before the caller records
anything. Our MLflow store is the record (no Ray MLflow callback, no Ray checkpoints). Workers tell the driver through
a small mailbox actor when a run opened and the metrics for the live view; a trial's report is what its worker
returns. A trial whose process dies without reporting (killed for memory, node lost) is marked FAILED in MLflow by the
driver.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Any

from mtp_bench.cpu_kernels import pinned_environment
from mtp_bench.errors import RayStartError, SchedulingError
from mtp_bench.scheduler.attempt import finished_run, skipped_report
from mtp_bench.scheduler.checks import check_resources, check_tracking
from mtp_bench.scheduler.live import GridView, progress_log
from mtp_bench.scheduler.pool import WorkerPool, run_pool
from mtp_bench.scheduler.reports import TrialReport
from mtp_bench.suite.config import TrialConfig

_QUIET_LOGGERS = ("ray.train", "ray.air")  # their messages repeat what the summary table says


# ------------------------------------------------------------------------------------------------ the driver ----
class RaySession:
    """Ray joined or started, and the grid checked against it, before anything is recorded: a grid that can never
    run raises :class:`SchedulingError` here, so no parent run is left behind for it. Close it after the run."""

    def __init__(self, trials: list[TrialConfig], address: str | None = None):
        self.trials = trials
        self.pool: WorkerPool | None = None
        import ray  # noqa: F401 - before the thread below: the two never import the same modules at once

        importing = _import_tracking_meanwhile()  # MLflow's import overlaps Ray's start-up
        self.started_here = connect(address)
        try:
            self.nodes = alive_nodes()
            check_tracking(trials, self.nodes)
            check_resources(trials, self.nodes)
            self.pool = WorkerPool(trials, self.nodes, os.getcwd())  # warms up while the driver opens the store
            importing.join()
            self.trackers = _open_stores(trials)  # here, once: parallel trials must not race to create tables
        except BaseException:
            self.close()
            raise

    def run(self, *, parent_id: str | None, resume: bool, console: Any = None) -> list[TrialReport]:
        """One report per trial, in the order given."""
        trials = self.trials
        reports = _already_finished(trials, self.trackers) if resume else {}  # skipped without starting a trial
        log = progress_log(trials[0].tracking.workdir, trials[0].suite) if trials else None
        view = GridView([(t.trial_id, t.label) for t in trials], console, log=log)
        for report in reports.values():
            view.finish(report)
        pending = [t for t in trials if t.trial_id not in reports]
        if pending and self.pool is not None:
            with view, _quiet(_QUIET_LOGGERS):
                reports.update(run_pool(self.pool, pending, parent_id=parent_id, resume=resume, view=view,
                                        tracker_for=lambda trial: self.trackers[_store_key(trial)]))
        return [reports[t.trial_id] for t in trials]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.started_here:
            import ray

            ray.shutdown()
            self.started_here = False


def run_with_ray(
    trials: list[TrialConfig], *, parent_id: str | None, resume: bool, address: str | None = None, console: Any = None
) -> list[TrialReport]:
    """Run the grid on Ray and return one report per trial, in the order given. Raises :class:`SchedulingError`
    before anything runs when the cluster can never run the grid."""
    if not trials:
        return []
    session = RaySession(trials, address)
    try:
        return session.run(parent_id=parent_id, resume=resume, console=console)
    finally:
        session.close()


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local Ray sized to this machine. Returns
    whether this call started Ray (and so should stop it). Worker output stays in Ray's log folder: the live view is
    the only thing drawn on the console."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    # ray.init installs a SIGTERM handler that exits at once (nothing recorded, no message): ours (the caller's,
    # sigterm_as_interrupt) is put back, and a SIGTERM during the start itself stops it as Ctrl-C would.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        if address:
            # A cluster's workers start from their node's environment, not ours: carry the CPU kernel pins.
            pins = pinned_environment()
            ray.init(address=address, log_to_driver=False, logging_level="ERROR",
                     runtime_env={"env_vars": pins} if pins else None)
        else:
            ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     object_store_memory=512 * 1024**2)  # trials exchange configs and messages, not tensors
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or SIGTERM through Ray's handler (sys.exit)
        with contextlib.suppress(Exception):
            ray.shutdown()  # what the start left behind
        raise KeyboardInterrupt from None
    except Exception as exc:  # noqa: BLE001 - Ray raises a plain Exception when a local node is slow to start
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = ("; a loaded machine may need more time: retry, or run without Ray (--no-ray)" if not address
                else "; check the address and that the cluster runs the same Ray version")
        raise RayStartError(f"could not start or join {where}: {first}{hint}") from None
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return True


def alive_nodes() -> list[dict[str, Any]]:
    """``{"id", "host", "resources"}`` of every live node."""
    import ray

    return [{"id": n["NodeID"], "host": n["NodeManagerAddress"], "resources": dict(n["Resources"])}
            for n in ray.nodes() if n.get("Alive")]


def _store_key(trial: TrialConfig) -> tuple[str, str]:
    return trial.tracking.uri, trial.tracking.experiment or trial.suite


def _open_stores(trials: list[TrialConfig]) -> dict[tuple[str, str], Any]:
    """A tracker per store and experiment, which also creates a fresh store's tables and the experiment."""
    from mtp_bench.tracking import Tracker

    trackers: dict[tuple[str, str], Any] = {}
    for trial in trials:
        key = _store_key(trial)
        if key not in trackers:
            try:
                trackers[key] = Tracker(*key)
            except Exception as exc:
                raise SchedulingError(f"cannot open the tracking store {key[0]}: {exc}") from None
    return trackers


def _already_finished(trials: list[TrialConfig], trackers: dict[tuple[str, str], Any]) -> dict[str, TrialReport]:
    reports: dict[str, TrialReport] = {}
    for trial in trials:
        tracker = trackers[_store_key(trial)]
        run = finished_run(tracker, trial)
        if run is not None:
            reports[trial.trial_id] = skipped_report(trial, run)
    return reports


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]):
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _import_tracking_meanwhile() -> threading.Thread:
    """Import the store's code (MLflow: seconds) in a thread while Ray starts: ``ray.init`` mostly waits."""

    def load() -> None:
        with contextlib.suppress(Exception):  # imported again, and the error shown, where it is needed
            import mtp_bench.tracking.runs  # noqa: F401

    thread = threading.Thread(target=load, name="import-tracking", daemon=True)
    thread.start()
    return thread


__all__ = ["RaySession", "SchedulingError", "connect", "run_with_ray"]
