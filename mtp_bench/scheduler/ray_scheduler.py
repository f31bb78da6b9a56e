"""Grids on Ray: each trial is a Ray Tune trial with the resources the suite asks for, on a local Ray sized to the
machine or on an existing cluster (``--address`` / ``RAY_ADDRESS``).

Why Tune and not plain tasks: Tune already queues trials by resources, caps concurrency, places them across nodes
and restarts a trial whose process died (``FailureConfig``); we add only what is ours. A trial runs
:func:`~mtp_bench.scheduler.trial_run.execute_trial` in its Tune actor (one device) or drives a Ray Train
``TorchTrainer`` from it (several workers, :mod:`~mtp_bench.scheduler.ray_train`), as Ray documents for Train V2.

A :class:`RaySession` starts or joins Ray and checks the grid against the cluster before the caller records
anything. Our MLflow store is the record (no Ray MLflow callback, no Tune checkpoints); Tune's own folder is a scratch
folder under the suite's workdir, removed afterwards. Workers talk to the driver through a small mailbox actor
(:mod:`~mtp_bench.scheduler.tune_bridge` reads it): when a run opened, metrics for the live view, and the final report
(which carries the error of a failed trial). A trial whose process dies without reporting (killed for memory, node
lost) is marked FAILED in MLflow by the driver.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mtp_bench.scheduler.checks import (
    RayStartError,
    SchedulingError,
    check_resources,
    check_tracking,
    concurrency_cap,
    resource_demand,
)
from mtp_bench.scheduler.live import GridView, Mailbox, Sender
from mtp_bench.scheduler.reports import FAILED, TrialReport, new_report
from mtp_bench.scheduler.trial_run import execute_trial, finished_run, skipped_report
from mtp_bench.scheduler.tune_bridge import bridge_class, silent_progress
from mtp_bench.scheduler.worker import enter_driver_directory, torch_threads
from mtp_bench.suite.models import TrialConfig

_TUNE_ENV = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/JSON/TensorBoard copies of our metrics
             "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",  # errors are in MLflow and in the summary table
             "RAY_AIR_NEW_OUTPUT": "0", "RAY_CHDIR_TO_TRIAL_DIR": "0"}  # verbose=0 is silent only in the old engine
_QUIET_LOGGERS = ("ray.tune", "ray.train", "ray.air")  # their messages repeat what the summary table says


DRIVER_MEMORY = 512 * 1024**2  # bytes a multi-worker trial's driver (Tune actor + Ray Train controller) reserves


class RetryTrial(RuntimeError):
    """Raised in a Tune trial after its failure is recorded: Tune discards the process and, while the grid's
    ``resources.max_retries`` allow, starts the trial again (it reopens its run and resumes its checkpoint)."""


# ------------------------------------------------------------------------------------------------ the driver ----
class RaySession:
    """Ray joined or started, and the grid checked against it, before anything is recorded: a grid that can never
    run raises :class:`SchedulingError` here, so no parent run is left behind for it. Close it after the run."""

    def __init__(self, trials: list[TrialConfig], address: str | None = None):
        self.trials = trials
        self.started_here = connect(address)
        try:
            self.nodes = alive_nodes()
            check_tracking(trials, self.nodes)
            check_resources(trials, self.nodes)
            self.trackers = _open_stores(trials)  # here, once: parallel trials must not race to create tables
        except BaseException:
            self.close()
            raise

    def run(self, *, parent_id: str | None, resume: bool, console: Any = None) -> list[TrialReport]:
        """One report per trial, in the order given."""
        trials = self.trials
        reports = _already_finished(trials, self.trackers) if resume else {}  # skipped without starting a worker
        view = GridView([(t.trial_id, t.label) for t in trials], console)
        for report in reports.values():
            view.finish(report)
        pending = [t for t in trials if t.trial_id not in reports]
        if pending:
            with view, _env(_TUNE_ENV), _quiet(_QUIET_LOGGERS):
                reports.update(_run_tune(pending, self.nodes, parent_id=parent_id, resume=resume, view=view))
        return [reports[t.trial_id] for t in trials]

    def close(self) -> None:
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
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     object_store_memory=512 * 1024**2)  # trials exchange configs and messages, not tensors
    except Exception as exc:  # noqa: BLE001 - Ray raises a plain Exception when a local node is slow to start
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = ("; a loaded machine may need more time: retry, or run without Ray (--no-ray)" if not address
                else "; check the address and that the cluster runs the same Ray version")
        raise RayStartError(f"could not start or join {where}: {first}{hint}") from None
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
def _env(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if saved[k] is None})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


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


# --------------------------------------------------------------------------------------------------- Tune ----
def _run_tune(trials: list[TrialConfig], nodes: list[dict[str, Any]], *, parent_id: str | None, resume: bool,
              view: GridView) -> dict[str, TrialReport]:
    import ray
    from ray import tune

    mailbox = ray.remote(num_cpus=0)(Mailbox).remote()
    dumps = [t.model_dump(mode="json") for t in trials]
    ids = [t.trial_id for t in trials]
    trainable = tune.with_parameters(tune_trial, dumps=dumps, ids=ids, parent_id=parent_id, resume=resume,
                                     mailbox=mailbox, cwd=os.getcwd())
    trainable = tune.with_resources(trainable, lambda config: _placement(trials[config["index"]]))
    scratch = Path(trials[0].tracking.workdir) / trials[0].suite / "_tune"  # Tune's folder, ours to remove
    name = f"grid-{(parent_id or 'local')[:12]}-{int(time.time())}"
    bridge = bridge_class()(trials, mailbox, view)
    tuner = tune.Tuner(
        trainable,
        param_space={"index": tune.grid_search(list(range(len(trials))))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=concurrency_cap(trials, nodes),
            trial_name_creator=lambda t: ids[t.config["index"]],
            trial_dirname_creator=lambda t: ids[t.config["index"]],
            # A finished trial's process runs the next one (no new imports: measured ~10 s a trial on 2 busy
            # cores); a failed trial's process is never reused (tune_trial raises), so its state cannot leak.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(scratch),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=max(t.resources.max_retries for t in trials)),
            callbacks=[bridge, silent_progress()],
        ),
    )
    try:
        tuner.fit()
        bridge.drain()
    finally:
        shutil.rmtree(scratch / name, ignore_errors=True)  # only this grid's: another may be running beside it
        with contextlib.suppress(OSError):
            scratch.rmdir()
    return bridge.finalize()


def _placement(trial: TrialConfig) -> Any:
    """One bundle with the trial's resources. A multi-worker trial's Tune actor only drives Ray Train, whose
    workers reserve their own: it takes some memory and no CPU (even a sliver of one would leave a 2-CPU machine
    unable to place two 1-CPU workers, and Tune needs a non-empty bundle)."""
    from ray.tune import PlacementGroupFactory

    if trial.resources.num_workers > 1:
        return PlacementGroupFactory([{"memory": DRIVER_MEMORY}])
    return PlacementGroupFactory([resource_demand(trial)])


# ------------------------------------------------------------------------------------------- in the worker ----
def tune_trial(config: dict[str, Any], *, dumps: list[dict[str, Any]], ids: list[str], parent_id: str | None,
               resume: bool, mailbox: Any, cwd: str) -> None:
    """One Tune trial: train and evaluate a grid cell, recording it in its MLflow run, and post the report."""
    import ray
    import torch

    enter_driver_directory(cwd)
    trial = TrialConfig.model_validate(dumps[config["index"]])
    node = ray.get_runtime_context().get_node_id()
    sender = Sender(mailbox, ids[config["index"]], node)
    if trial.trial_id != sender.trial_id:  # same config, another hash: this node runs another mtp-bench version
        report = new_report(trial, FAILED, node)
        report.trial_id = sender.trial_id
        report.error = (f"this worker computes trial id {trial.trial_id} for the driver's {sender.trial_id}: install "
                        "the same mtp-bench version on every node (and restart Ray after changing it)")
        sender.done(asdict(report))
        return
    run = None
    if trial.resources.num_workers > 1:
        from mtp_bench.scheduler.ray_train import run_distributed

        run = run_distributed
    else:
        torch.set_num_threads(torch_threads(trial, trial.resources.cpus_per_trial) or 1)
    from mtp_bench.trial.prepare import preload

    preload(trial)  # once per process in effect (reuse_actors): imports are not the trial's time
    report = execute_trial(trial, parent_id=parent_id, resume=resume, progress=False, node=node, run=run,
                           on_metrics=sender.metrics, on_open=sender.opened)
    sender.done(asdict(report))
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the process may run the next trial
    if report.status == FAILED:  # Tune retires this process, and retries the trial while retries are left
        raise RetryTrial(report.error)


__all__ = ["RaySession", "RetryTrial", "SchedulingError", "connect", "run_with_ray", "tune_trial"]
