"""Grids on Ray: each trial is a Ray Tune trial with the resources the suite asks for, on a local Ray sized to the
machine or on an existing cluster (``--address`` / ``RAY_ADDRESS``).

Why Tune and not plain tasks: Tune already queues trials by resources, caps concurrency, places them across nodes
and restarts a trial whose process died (``FailureConfig``); we add only what is ours. A trial runs
:func:`~mtp_bench.scheduler.common.execute_trial` in its Tune actor (one device) or drives a Ray Train
``TorchTrainer`` from it (several workers, :mod:`~mtp_bench.scheduler.ray_train`), as Ray documents for Train V2.

Our MLflow store is the record (no Ray MLflow callback, no Tune checkpoints); Tune's own folder is a scratch folder
under the suite's workdir, removed afterwards. Workers talk to the driver through a small mailbox actor: when a run
opened, metrics for the live view, and the final report (which carries the error of a failed trial). A trial whose
process dies without reporting (killed for memory, node lost) is marked FAILED in MLflow by the driver.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mtp_bench.scheduler.common import (
    FAILED,
    FINISHED,
    SchedulingError,
    TrialReport,
    execute_trial,
    finished_run,
    new_report,
    skipped_report,
    torch_threads,
)
from mtp_bench.scheduler.live import GridView, Mailbox, Sender
from mtp_bench.suite.models import TrialConfig

_LOCAL_STORES = {"", "file", "sqlite"}  # URI schemes only processes on this machine can write to
_TUNE_ENV = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/JSON/TensorBoard copies of our metrics
             "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",  # errors are in MLflow and in the summary table
             "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "3600"}


class RetryTrial(RuntimeError):
    """Raised in a Tune trial after its failure is recorded, so that Tune's FailureConfig starts it again."""


# ------------------------------------------------------------------------------------------------ the driver ----
def run_with_ray(
    trials: list[TrialConfig], *, parent_id: str | None, resume: bool, address: str | None = None, console: Any = None
) -> list[TrialReport]:
    """Run the grid on Ray and return one report per trial, in the order given. Raises :class:`SchedulingError`
    before anything runs when the cluster can never run the grid."""
    if not trials:
        return []
    import ray

    started_here = connect(address)
    try:
        nodes = alive_nodes()
        check_tracking(trials, nodes)
        check_resources(trials, nodes)
        reports: dict[str, TrialReport] = {}
        if resume:  # finished trials are skipped here, without starting a worker for them
            reports = _already_finished(trials)
        view = GridView([(t.trial_id, t.label) for t in trials], console)
        for report in reports.values():
            view.finish(report)
        pending = [t for t in trials if t.trial_id not in reports]
        if pending:
            with view, _env(_TUNE_ENV):
                reports.update(_run_tune(pending, nodes, parent_id=parent_id, resume=resume, view=view))
        return [reports[t.trial_id] for t in trials]
    finally:
        if started_here:
            ray.shutdown()


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
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        else:
            ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="WARNING",
                     object_store_memory=512 * 1024**2)  # trials exchange configs and messages, not tensors
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise SchedulingError(f"could not start or join {where}: {exc}") from None
    return True


def alive_nodes() -> list[dict[str, Any]]:
    """``{"id", "host", "resources"}`` of every live node."""
    import ray

    return [{"id": n["NodeID"], "host": n["NodeManagerAddress"], "resources": dict(n["Resources"])}
            for n in ray.nodes() if n.get("Alive")]


# ------------------------------------------------------------------------------------------ up-front checks ----
def check_tracking(trials: list[TrialConfig], nodes: list[dict[str, Any]]) -> None:
    """A SQLite or file store lives on one machine's disk: on a cluster of several machines, trials elsewhere
    could not record anything. Require a tracking server (or a database server) there."""
    hosts = sorted({n["host"] for n in nodes})
    if len(hosts) < 2:
        return
    for uri in sorted({t.tracking.uri for t in trials}):
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if scheme in _LOCAL_STORES:
            raise SchedulingError(
                f"tracking.uri is {uri!r}, a store on this machine's disk, but the Ray cluster spans {len(hosts)} "
                f"machines ({', '.join(hosts[:4])}{', ...' if len(hosts) > 4 else ''}): trials on the others could "
                "not record their runs. Start a tracking server that every node reaches, e.g. `mlflow server "
                "--backend-store-uri sqlite:///PATH/mlflow.db --host 0.0.0.0 --port 5000`, and set "
                "tracking.uri=http://HOST:5000 (or MLFLOW_TRACKING_URI); a database URI (postgresql://...) works too")


def _demand(trial: TrialConfig) -> dict[str, float]:
    res = trial.resources
    return {k: v for k, v in {"CPU": res.cpus_per_trial, "GPU": res.gpus_per_trial}.items() if v > 0}


def _fits(capacity: dict[str, float], demand: dict[str, float]) -> int:
    """How many bundles of ``demand`` one node holds."""
    return min(int(math.floor(capacity.get(k, 0.0) / v + 1e-9)) for k, v in demand.items())


def check_resources(trials: list[TrialConfig], nodes: list[dict[str, Any]]) -> None:
    """Fail now, naming the trial and the resource, when no node (or, for several workers, the whole cluster) could
    ever hold what a trial asks for: Tune would otherwise wait for it forever."""
    problems: dict[str, list[str]] = {}
    for trial in trials:
        res, demand = trial.resources, _demand(trial)
        device = trial.train.device
        if device.startswith("cuda") and res.gpus_per_trial == 0:
            problem = (f"train.device is {device!r} but resources.gpus_per_trial is 0: Ray shows a trial only the "
                       "GPUs it reserves; set resources.gpus_per_trial (fractions allowed)")
        elif res.num_workers == 1 and not any(_fits(n["resources"], demand) for n in nodes):
            problem = (f"asks for {_describe(demand)} (resources.cpus_per_trial / gpus_per_trial) but no node of the "
                       f"Ray cluster has that: {_inventory(nodes)}")
        elif res.num_workers > 1 and sum(_fits(n["resources"], demand) for n in nodes) < res.num_workers:
            placeable = sum(_fits(n["resources"], demand) for n in nodes)
            problem = (f"asks for {res.num_workers} workers with {_describe(demand)} each (resources.num_workers, "
                       f"cpus_per_trial, gpus_per_trial) but the Ray cluster can hold {placeable}: "
                       f"{_inventory(nodes)}")
        else:
            continue
        problems.setdefault(problem, []).append(trial.label)
    if problems:
        lines = []
        for problem, labels in problems.items():
            more = f" (and {len(labels) - 1} more trials)" if len(labels) > 1 else ""
            lines.append(f"trial {labels[0]!r}{more} {problem}")
        hint = "; lower the request, or join a cluster that has it with --address / RAY_ADDRESS"
        raise SchedulingError("; ".join(lines) + hint)


def concurrency_cap(trials: list[TrialConfig], nodes: list[dict[str, Any]]) -> int | None:
    """``resources.max_concurrent_trials``, and for multi-worker trials the number whose workers fit at once: their
    Tune trial is only a driver that reserves nothing, so Tune alone would start them all and leave most waiting."""
    caps = [t.resources.max_concurrent_trials for t in trials if t.resources.max_concurrent_trials]
    for trial in trials:
        if trial.resources.num_workers > 1:
            placeable = sum(_fits(n["resources"], _demand(trial)) for n in nodes)
            caps.append(max(1, placeable // trial.resources.num_workers))
    return min(caps) if caps else None


def _describe(demand: dict[str, float]) -> str:
    return " + ".join(f"{v:g} {k}" for k, v in demand.items())


def _inventory(nodes: list[dict[str, Any]]) -> str:
    counts = Counter(f"{n['resources'].get('CPU', 0):g} CPU, {n['resources'].get('GPU', 0):g} GPU" for n in nodes)
    return "; ".join(f"{count} node(s) with {what}" for what, count in counts.items())


def _already_finished(trials: list[TrialConfig]) -> dict[str, TrialReport]:
    from mtp_bench.tracking import Tracker

    reports: dict[str, TrialReport] = {}
    trackers: dict[tuple[str, str], Any] = {}
    for trial in trials:
        key = (trial.tracking.uri, trial.tracking.experiment or trial.suite)
        tracker = trackers.setdefault(key, Tracker(*key))
        run = finished_run(tracker, trial)
        if run is not None:
            reports[trial.trial_id] = skipped_report(trial, run, tracker)
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


# --------------------------------------------------------------------------------------------------- Tune ----
def _run_tune(trials: list[TrialConfig], nodes: list[dict[str, Any]], *, parent_id: str | None, resume: bool,
              view: GridView) -> dict[str, TrialReport]:
    import ray
    from ray import tune

    mailbox = ray.remote(num_cpus=0)(Mailbox).remote()
    dumps = [t.model_dump(mode="json") for t in trials]
    ids = [t.trial_id for t in trials]
    trainable = tune.with_parameters(tune_trial, dumps=dumps, parent_id=parent_id, resume=resume, mailbox=mailbox)
    trainable = tune.with_resources(trainable, lambda config: _placement(trials[config["index"]]))
    scratch = Path(trials[0].tracking.workdir) / trials[0].suite / "_tune"
    bridge = _bridge_class()(trials, mailbox, view)
    tuner = tune.Tuner(
        trainable,
        param_space={"index": tune.grid_search(list(range(len(trials))))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=concurrency_cap(trials, nodes),
            trial_name_creator=lambda t: ids[t.config["index"]],
            trial_dirname_creator=lambda t: ids[t.config["index"]],
            reuse_actors=False,  # a fresh process per trial: nothing (CUDA state, threads) leaks between trials
        ),
        run_config=tune.RunConfig(
            name=f"grid-{(parent_id or 'local')[:12]}-{int(time.time())}",
            storage_path=str(scratch),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=max(t.resources.max_retries for t in trials)),
            callbacks=[bridge],
        ),
    )
    try:
        tuner.fit()
        bridge.drain()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return bridge.finalize()


def _placement(trial: TrialConfig) -> Any:
    """One bundle with the trial's resources; a multi-worker trial's Tune actor only drives Ray Train, whose
    workers reserve their own, so it reserves (almost) nothing."""
    from ray.tune import PlacementGroupFactory

    if trial.resources.num_workers > 1:
        return PlacementGroupFactory([{"CPU": 0.001}])
    return PlacementGroupFactory([_demand(trial)])


# ------------------------------------------------------------------------------------------- in the worker ----
def tune_trial(config: dict[str, Any], *, dumps: list[dict[str, Any]], parent_id: str | None, resume: bool,
               mailbox: Any) -> None:
    """One Tune trial: train and evaluate a grid cell, recording it in its MLflow run, and post the report."""
    import ray
    import torch

    trial = TrialConfig.model_validate(dumps[config["index"]])
    node = ray.get_runtime_context().get_node_id()
    sender = Sender(mailbox, trial.trial_id, node)
    run = None
    if trial.resources.num_workers > 1:
        from mtp_bench.scheduler.ray_train import run_distributed

        run = run_distributed
    else:
        torch.set_num_threads(torch_threads(trial, trial.resources.cpus_per_trial) or 1)
    report = execute_trial(trial, parent_id=parent_id, resume=resume, progress=False, node=node, run=run,
                           on_metrics=sender.metrics, on_open=sender.opened)
    sender.done(asdict(report))
    if report.status == FAILED and report.attempt <= trial.resources.max_retries:
        raise RetryTrial(report.error)


# --------------------------------------------------------------------------------- worker <-> driver messages ----
def _bridge_class() -> type:
    from ray import tune

    class TuneBridge(tune.Callback):
        """Runs in the driver inside Tune's event loop: feeds the live view, collects reports, and records trials
        whose process died before it could report."""

        def __init__(self, trials: list[TrialConfig], mailbox: Any, view: GridView):
            self.trials, self.mailbox, self.view = trials, mailbox, view
            self.by_id = {t.trial_id: t for t in trials}
            self.reports: dict[str, TrialReport] = {}
            self.opened: dict[str, tuple[str, str, int]] = {}  # trial id -> (node, run id, attempt)
            self._drained = 0.0

        def __getstate__(self) -> dict:
            return {}  # Tune pickles its config for Tuner.restore, which we never use; the console cannot pickle

        def _id(self, trial: Any) -> str:
            return self.trials[trial.config["index"]].trial_id

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.view.start(self._id(trial))

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            if time.monotonic() - self._drained > 0.5:
                self.drain()

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.drain()

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.drain()
            trial_id = self._id(trial)
            report = self.reports.get(trial_id)
            self.view.retrying(trial_id, report.error if report else _tune_error(trial))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.drain()
            trial_id = self._id(trial)
            node, run_id, attempt = self.opened.get(trial_id, (None, None, 1))
            report = self.reports.get(trial_id)
            if report is not None and report.attempt >= attempt:
                return  # the trial reported its own failure (and asked for a retry Tune no longer grants)
            report = new_report(self.by_id[trial_id], FAILED, node)
            report.run_id, report.attempt = run_id, attempt
            report.error = f"trial process lost: {_tune_error(trial)}"
            if run_id is not None:
                _record_lost(self.by_id[trial_id], run_id, report.error)
            self.reports[trial_id] = report
            self.view.finish(report)

        def drain(self) -> None:
            import ray

            self._drained = time.monotonic()
            for item in ray.get(self.mailbox.take.remote()):
                kind, trial_id = item[0], item[1]
                if kind == "open":
                    self.opened[trial_id] = (item[2], item[3], item[4])
                    self.view.start(trial_id, item[2], item[4])
                elif kind == "metrics":
                    self.view.update(trial_id, item[3], item[2])
                elif kind == "done":
                    report = TrialReport(**item[2])
                    self.reports[trial_id] = report
                    if not (report.status == FAILED and report.attempt <= self.by_id[trial_id].resources.max_retries):
                        self.view.finish(report)

        def finalize(self) -> dict[str, TrialReport]:
            """Trials without a report were stopped by an interruption: their runs are KILLED (``--resume``
            continues them) and the interruption goes on to the caller."""
            missing = [t for t in self.trials if t.trial_id not in self.reports]
            for trial in missing:
                if trial.trial_id in self.opened:
                    _record_lost(trial, self.opened[trial.trial_id][1], None)
            if missing:
                raise KeyboardInterrupt(f"{len(missing)} trials did not finish")
            return self.reports

    return TuneBridge


def _tune_error(trial: Any) -> str:
    try:
        error = trial.get_error()
    except Exception:  # noqa: BLE001 - best effort: the error file may be gone with its node
        error = None
    lines = [line for line in str(error or "").strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "no error recorded (killed, out of memory, or its node was lost)"


def _record_lost(trial: TrialConfig, run_id: str, error: str | None) -> None:
    from mtp_bench.tracking import Tracker

    tracker = Tracker(trial.tracking.uri, trial.tracking.experiment or trial.suite)
    if tracker.client.get_run(run_id).info.status in (FINISHED, FAILED):
        return
    if error is None:
        tracker.finish(run_id, "KILLED")
    else:
        tracker.fail(run_id, error)


__all__ = ["FINISHED", "FAILED", "RetryTrial", "SchedulingError", "check_resources", "check_tracking",
           "concurrency_cap", "connect", "new_report", "run_with_ray", "tune_trial"]
