"""What every scheduler does around a trial: find or open its MLflow run, decide skip/resume/retry, run it, and turn
any failure into a FAILED run with the error attached, never a crashed grid.

One trial has one MLflow run per grid it belongs to: a retry in the same invocation (same parent run) and a
``--resume`` from a later invocation both reopen it, and the trial continues from ``workdir/checkpoint``.
"""

from __future__ import annotations

import math
import shutil
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtp_bench.suite.models import TrialConfig

FINISHED, FAILED, SKIPPED = "FINISHED", "FAILED", "SKIPPED"
_LOCAL_STORES = {"", "file", "sqlite"}  # tracking URI schemes only processes on this machine can write to
_HINT = "; lower the request, or join a cluster that has it (--address / RAY_ADDRESS)"
TAG_INVOCATION = "mtp_bench.invocation"  # parent run id of the invocation that last opened a trial's run
TAG_ATTEMPT = "mtp_bench.attempt"  # how many times that invocation has opened it (1 = first try, 2 = first retry)

# (trial, workdir, tracker, run id, on_metrics) -> final metrics. The default trains in this process.
RunFn = Callable[[TrialConfig, Path, Any, str, Callable[[dict[str, float], int], None] | None], dict[str, float]]


class SchedulingError(ValueError):
    """A grid that cannot run where it was sent (resources no node has, a tracking store other machines cannot
    reach). Raised before any trial starts; the message is meant for the user as it is."""


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
    attempt: int = 1  # 1 on the first try; retries count up


@dataclass
class OpenedRun:
    run_id: str
    done: bool  # already FINISHED: nothing to run
    attempt: int


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


def open_trial_run(tracker: Any, trial: TrialConfig, parent_id: str | None, resume: bool) -> OpenedRun:
    """The run to write into. A run this invocation opened before is a retry: reopened, checkpoint kept. With
    ``resume`` an earlier invocation's run of the same trial id is reused: skipped when FINISHED, reopened otherwise
    (its checkpoint continues it). Otherwise a fresh run and a fresh workdir."""
    runs = tracker.trial_runs(trial.trial_id) if (resume or parent_id) else []
    ours = [r for r in runs if parent_id and r.data.tags.get(TAG_INVOCATION) == parent_id]
    if ours:
        run = ours[0]
        if run.info.status == FINISHED:
            return OpenedRun(run.info.run_id, True, int(run.data.tags.get(TAG_ATTEMPT, "1")))
        attempt = int(run.data.tags.get(TAG_ATTEMPT, "1")) + 1
        tracker.reopen(run.info.run_id)
        tracker.set_tags(run.info.run_id, {TAG_ATTEMPT: str(attempt)})
        return OpenedRun(run.info.run_id, False, attempt)
    if resume and runs:
        finished = [r for r in runs if r.info.status == FINISHED]
        if finished:
            return OpenedRun(finished[0].info.run_id, True, 1)
        run_id = runs[0].info.run_id
        tracker.reopen(run_id)
        tracker.set_tags(run_id, {TAG_INVOCATION: parent_id or "", TAG_ATTEMPT: "1"})
        return OpenedRun(run_id, False, 1)
    shutil.rmtree(trial_workdir(trial) / "checkpoint", ignore_errors=True)  # a fresh run must not inherit weights
    tags = {**trial_tags(trial), TAG_INVOCATION: parent_id or "", TAG_ATTEMPT: "1"}
    return OpenedRun(tracker.start_run(trial.label, tags, parent_id), False, 1)


def finished_run(tracker: Any, trial: TrialConfig) -> Any | None:
    """The newest FINISHED run of this trial id, if any (what ``--resume`` skips)."""
    return next((r for r in tracker.trial_runs(trial.trial_id) if r.info.status == FINISHED), None)


def finished_metrics(tracker: Any, run_id: str) -> dict[str, float]:
    return dict(tracker.client.get_run(run_id).data.metrics)


def new_report(trial: TrialConfig, status: str = FAILED, node: str | None = None) -> TrialReport:
    return TrialReport(trial.trial_id, trial.label, trial.method.display_name, trial.seed, status, node=node)


def skipped_report(trial: TrialConfig, run: Any, tracker: Any) -> TrialReport:
    report = new_report(trial, SKIPPED)
    report.run_id, report.metrics = run.info.run_id, dict(run.data.metrics)
    return report


def torch_threads(trial: TrialConfig, reserved_cpus: float | None) -> int | None:
    """CPU threads for torch: ``train.torch_threads``, else the CPUs the scheduler reserved (None: leave as is)."""
    if trial.train.torch_threads:
        return trial.train.torch_threads
    return max(1, int(reserved_cpus)) if reserved_cpus else None


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


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
) -> TrialReport:
    """Run one trial (``run``: in this process by default, or data-parallel through Ray Train), recording it in its
    own MLflow run. Never raises for a failing trial, except to pass on a KeyboardInterrupt."""
    from mtp_bench.tracking import Tracker

    started = time.perf_counter()
    report = new_report(trial, node=node)
    try:
        tracker = Tracker(trial.tracking.uri, trial.tracking.experiment or trial.suite)
        opened = open_trial_run(tracker, trial, parent_id, resume)
    except (Exception, SystemExit) as exc:  # nothing is recorded: the report is all there is
        report.error = f"could not open the trial's run in {trial.tracking.uri}: {short_error(exc)}"
        return report
    report.run_id, report.attempt = opened.run_id, opened.attempt
    if opened.done:
        report.status, report.metrics = SKIPPED, finished_metrics(tracker, opened.run_id)
        return report
    if on_open is not None:
        on_open(opened)
    try:
        if run is None:
            metrics = run_in_this_process(trial, trial_workdir(trial), tracker, opened.run_id, on_metrics, progress)
        else:
            metrics = run(trial, trial_workdir(trial), tracker, opened.run_id, on_metrics)
    except BaseException as exc:  # noqa: BLE001 - a trial's failure is data, reported below
        report.error = short_error(exc)
        try:
            tracker.fail(opened.run_id, "".join(traceback.format_exception(exc)))
        except Exception as tracking_error:  # the store itself failing must not hide the trial's error
            report.error += f" (and recording the failure failed: {tracking_error})"
        report.seconds = time.perf_counter() - started
        if isinstance(exc, KeyboardInterrupt):
            raise
        return report
    tracker.finish(opened.run_id)
    report.status, report.metrics = FINISHED, metrics
    report.seconds = time.perf_counter() - started
    return report


# ------------------------------------------------------------------- before a grid starts: can it ever run? ----
# Pure functions of the trials and the cluster's live nodes (``{"id", "host", "resources"}``), so that they are
# tested without a cluster.
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


def resource_demand(trial: TrialConfig) -> dict[str, float]:
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
        res, demand = trial.resources, resource_demand(trial)
        device = trial.train.device
        if res.num_workers > 1 and res.strategy == "fsdp" and trial.train.precision == "fp16":
            # each rank would see inf/NaN only in its own gradient shard, and skip steps the others take
            problem = ("asks for resources.strategy=fsdp with train.precision=fp16, whose loss scaler does not work "
                       "on sharded gradients; use bf16 (or fp32)")
        elif device.startswith("cuda") and res.gpus_per_trial == 0:
            problem = (f"train.device is {device!r} but resources.gpus_per_trial is 0: Ray shows a trial only the "
                       "GPUs it reserves; set resources.gpus_per_trial (fractions allowed)")
        elif res.num_workers == 1 and not any(_fits(n["resources"], demand) for n in nodes):
            problem = (f"asks for {_describe(demand)} (resources.cpus_per_trial / gpus_per_trial) but no node of the "
                       f"Ray cluster has that: {_inventory(nodes)}{_HINT}")
        elif res.num_workers > 1 and sum(_fits(n["resources"], demand) for n in nodes) < res.num_workers:
            placeable = sum(_fits(n["resources"], demand) for n in nodes)
            problem = (f"asks for {res.num_workers} workers with {_describe(demand)} each (resources.num_workers, "
                       f"cpus_per_trial, gpus_per_trial) but the Ray cluster can hold {placeable}: "
                       f"{_inventory(nodes)}{_HINT}")
        else:
            continue
        problems.setdefault(problem, []).append(trial.label)
    if problems:
        lines = []
        for problem, labels in problems.items():
            more = f" (and {len(labels) - 1} more trials)" if len(labels) > 1 else ""
            lines.append(f"trial {labels[0]!r}{more} {problem}")
        raise SchedulingError("; ".join(lines))


def concurrency_cap(trials: list[TrialConfig], nodes: list[dict[str, Any]]) -> int | None:
    """``resources.max_concurrent_trials``, and for multi-worker trials the number whose workers fit at once: their
    Tune trial is only a driver that reserves nothing, so Tune alone would start them all and leave most waiting."""
    caps = [t.resources.max_concurrent_trials for t in trials if t.resources.max_concurrent_trials]
    for trial in trials:
        if trial.resources.num_workers > 1:
            placeable = sum(_fits(n["resources"], resource_demand(trial)) for n in nodes)
            caps.append(max(1, placeable // trial.resources.num_workers))
    return min(caps) if caps else None


def _describe(demand: dict[str, float]) -> str:
    return " + ".join(f"{v:g} {k}" for k, v in demand.items())


def _inventory(nodes: list[dict[str, Any]]) -> str:
    counts = Counter(f"{n['resources'].get('CPU', 0):g} CPU, {n['resources'].get('GPU', 0):g} GPU" for n in nodes)
    return "; ".join(f"{count} node(s) with {what}" for what, count in counts.items())
