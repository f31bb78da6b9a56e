"""The driver's side of a Ray grid: a pool of long-lived worker actors (:class:`~mtp_bench.scheduler.trial_worker.
TrialWorker`), each holding one trial's resources, that run the grid's trials one after another.

Why a pool and not a process per trial: a fresh process pays for importing torch, transformers and MLflow (seconds
of CPU) before its trial starts; a pool worker pays once, and warms up while the driver is still opening the store
and the parent run. Ray places the workers (by the CPUs and GPUs a trial asks for, across the nodes of a cluster) and
queues a worker that does not fit yet; the pool never holds more workers than ``resources.max_concurrent_trials``
and the cluster allow, and retires idle workers that no pending trial can use, so that trials asking for other
resources can be placed.

Failures: a trial that raised was recorded FAILED by its worker, which is then retired (its process may hold state
the trial broke) and, while ``resources.max_retries`` allows, the trial is run again in a fresh worker (it reopens
its run and resumes its checkpoint). A worker whose process died (killed for memory, node lost) is detected by Ray;
its trial's run is recorded FAILED by the driver ("trial process lost"), or retried the same way.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from mtp_bench.scheduler.checks import _fits, concurrency_cap, resource_demand
from mtp_bench.scheduler.live import GridView
from mtp_bench.scheduler.reports import FAILED, TrialReport, new_report, short_error
from mtp_bench.suite.config import TrialConfig
from mtp_bench.tracking import tags as T

DRIVER_MEMORY = 512 * 1024**2  # bytes a multi-worker trial's driver (pool worker + Ray Train controller) reserves
POLL_S = 0.5  # how often the driver looks at the workers' mailbox while no trial ends

Shape = tuple[tuple[str, float], ...]


def worker_resources(trial: TrialConfig) -> dict[str, float]:
    """What a pool worker for ``trial`` reserves. A multi-worker trial's worker only drives Ray Train, whose workers
    reserve their own: it takes some memory and no CPU (even a sliver of one would leave a 2-CPU machine unable to
    place two 1-CPU Train workers)."""
    if trial.resources.num_workers > 1:
        return {"num_cpus": 0, "memory": DRIVER_MEMORY}
    return {"num_cpus": trial.resources.cpus_per_trial, "num_gpus": trial.resources.gpus_per_trial}


def shape_of(trial: TrialConfig) -> Shape:
    return tuple(sorted(worker_resources(trial).items()))


def worker_limits(trials: list[TrialConfig], nodes: list[dict[str, Any]]) -> tuple[dict[Shape, int], int | None]:
    """How many workers of each shape may exist at once (what fits on the cluster, and no more than the trials of
    that shape), and the cap on all of them together (``resources.max_concurrent_trials``; multi-worker trials: how
    many fit side by side)."""
    cap = concurrency_cap(trials, nodes)
    counts = Counter(shape_of(t) for t in trials)
    limits: dict[Shape, int] = {}
    for trial in trials:
        shape = shape_of(trial)
        if shape in limits:
            continue
        fits = math.inf if trial.resources.num_workers > 1 else sum(_fits(n["resources"], resource_demand(trial))
                                                                    for n in nodes)
        limits[shape] = int(max(1, min(fits, counts[shape], cap or math.inf)))
    return limits, cap


class WorkerPool:
    """Long-lived :class:`TrialWorker` actors, by shape. Creating the pool starts the first workers at once (they
    warm up in the background); :meth:`take` hands out an idle worker or starts a new one within the limits."""

    def __init__(self, trials: list[TrialConfig], nodes: list[dict[str, Any]], cwd: str):
        import ray

        from mtp_bench.scheduler.trial_worker import TrialWorker

        self.actor_class = ray.remote(TrialWorker)
        self.cwd = cwd
        self.limits, self.cap = worker_limits(trials, nodes)
        self.idle: dict[Shape, list[Any]] = {shape: [] for shape in self.limits}
        self.live: Counter[Shape] = Counter()
        self.started = 0  # workers started in all (what the makespan benchmark reports)
        for trial in trials:  # the first wave, warming up while the driver opens the store and the parent run
            if self._room(shape_of(trial)):
                self.idle[shape_of(trial)].append(self._start(trial))

    def _room(self, shape: Shape) -> bool:
        total = sum(self.live.values())
        return self.live[shape] < self.limits.get(shape, 1) and (self.cap is None or total < self.cap)

    def _start(self, trial: TrialConfig) -> Any:
        shape = shape_of(trial)
        self.live[shape] += 1
        self.started += 1
        return self.actor_class.options(**worker_resources(trial)).remote(self.cwd, trial.model_dump(mode="json"))

    def take(self, trial: TrialConfig) -> Any | None:
        """An idle worker for ``trial`` (a new one if there is room), or None: the trial waits."""
        shape = shape_of(trial)
        if self.idle.get(shape):
            return self.idle[shape].pop(0)
        return self._start(trial) if self._room(shape) else None

    def give_back(self, trial: TrialConfig, worker: Any) -> None:
        self.idle.setdefault(shape_of(trial), []).append(worker)

    def retire(self, trial: TrialConfig, worker: Any) -> None:
        """Stop a worker (a failed trial's, or a dead one): its resources go back to Ray."""
        import ray

        self.live[shape_of(trial)] -= 1
        ray.kill(worker, no_restart=True)

    def retire_unneeded(self, pending: list[TrialConfig]) -> None:
        """Stop idle workers of shapes no pending trial has: their resources may be what another shape waits for."""
        import ray

        wanted = {shape_of(t) for t in pending}
        for shape, workers in self.idle.items():
            if shape not in wanted:
                for worker in workers:
                    self.live[shape] -= 1
                    ray.kill(worker, no_restart=True)
                workers.clear()

    def close(self) -> None:
        import ray

        for workers in self.idle.values():
            for worker in workers:
                ray.kill(worker, no_restart=True)
            workers.clear()
        self.live.clear()


def run_pool(pool: WorkerPool, trials: list[TrialConfig], *, parent_id: str | None, resume: bool, view: GridView,
             tracker_for: Callable[[TrialConfig], Any]) -> dict[str, TrialReport]:
    """Run ``trials`` on the pool's workers, in order as workers free up; one report per trial. An interruption
    (Ctrl-C) stops every worker, marks the runs of unfinished trials KILLED (``--resume`` continues them) and goes
    on to the caller."""
    import ray
    from ray.exceptions import RayActorError

    from mtp_bench.scheduler.live import Mailbox

    mailbox = ray.remote(num_cpus=0)(Mailbox).remote()
    pending: deque[TrialConfig] = deque(trials)
    running: dict[Any, tuple[TrialConfig, Any]] = {}
    tries: Counter[str] = Counter()
    opened: dict[str, tuple[str, str, int]] = {}  # trial id -> (node, run id, attempt), from the workers' messages
    reports: dict[str, TrialReport] = {}

    def drain() -> None:
        for item in ray.get(mailbox.take.remote()):
            kind, trial_id = item[0], item[1]
            if kind == "open":
                opened[trial_id] = (item[2], item[3], item[4])
                view.start(trial_id, item[2], item[4])
            elif kind == "metrics":
                view.update(trial_id, item[3], item[2])
        view.tick()  # a progress line now and then, even while no trial reports

    def finish(trial: TrialConfig, report: TrialReport) -> None:
        if report.status == FAILED and tries[trial.trial_id] <= trial.resources.max_retries:
            view.retrying(trial.trial_id, report.error)
            pending.appendleft(trial)  # next, in a fresh worker: it reopens its run and resumes its checkpoint
        else:
            reports[trial.trial_id] = report
            view.finish(report)

    try:
        while pending or running:
            for trial in list(pending):
                worker = pool.take(trial)
                if worker is None:
                    continue
                pending.remove(trial)
                tries[trial.trial_id] += 1
                opened.pop(trial.trial_id, None)  # this try's run is announced afresh
                ref = worker.run.remote(trial.model_dump(mode="json"), trial.trial_id, parent_id=parent_id,
                                        resume=resume, mailbox=mailbox)
                running[ref] = (trial, worker)
                view.placed(trial.trial_id)
            pool.retire_unneeded(list(pending))
            if not running:  # what waits needs a worker of another shape: the retired ones made room for it
                continue
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            drain()
            for ref in ready:
                trial, worker = running.pop(ref)
                try:
                    report = TrialReport(**ray.get(ref))
                except RayActorError as exc:  # the process died: nothing reported, the driver records it
                    pool.retire(trial, worker)
                    drain()
                    finish(trial, _lost(trial, exc, opened, parent_id, tracker_for, tries[trial.trial_id]))
                    continue
                except Exception as exc:  # noqa: BLE001 - the worker itself failed around the trial
                    report = new_report(trial, FAILED)
                    report.error = short_error(exc)
                if report.status == FAILED:
                    pool.retire(trial, worker)  # a failed trial's process is never reused: its state cannot leak
                else:
                    pool.give_back(trial, worker)
                finish(trial, report)
    except KeyboardInterrupt:
        for _, worker in running.values():  # stopped first, so that no run opens after the look-up below
            ray.kill(worker, no_restart=True)
        with contextlib.suppress(Exception, KeyboardInterrupt):  # best effort: a second Ctrl-C, Ray going down
            ray.wait(list(running), num_returns=len(running), timeout=5)
            drain()
        for trial, _ in running.values():  # KILLED: --resume continues them
            run_id = _run_of(trial, opened, parent_id, tracker_for)[1]
            if run_id is not None:
                tracker_for(trial).finish_unless_final(run_id, None)
        raise
    finally:
        for _, worker in running.values():
            ray.kill(worker, no_restart=True)
        pool.close()
        ray.kill(mailbox, no_restart=True)
    return reports


def _run_of(trial: TrialConfig, opened: dict[str, tuple[str, str, int]], parent_id: str | None,
            tracker_for: Callable[[TrialConfig], Any]) -> tuple[str | None, str | None, int | None]:
    """(node, run id, attempt) of the trial's run in this invocation: from its worker's message, else (a worker
    stopped before its message left) from the store."""
    if trial.trial_id in opened:
        return opened[trial.trial_id]
    if parent_id:
        runs = tracker_for(trial).trial_runs(trial.trial_id)
        ours = [r for r in runs if r.data.tags.get(T.TAG_INVOCATION) == parent_id]
        if ours:
            return None, ours[0].info.run_id, int(ours[0].data.tags.get(T.TAG_ATTEMPT, "1"))
    return None, None, None


def _lost(trial: TrialConfig, exc: Exception, opened: dict[str, tuple[str, str, int]], parent_id: str | None,
          tracker_for: Callable[[TrialConfig], Any], tries: int) -> TrialReport:
    """The report of a trial whose process died on its ``tries``-th try; on its last try its run is recorded FAILED
    (a run still RUNNING is what a retry reopens)."""
    node, run_id, attempt = _run_of(trial, opened, parent_id, tracker_for)
    report = new_report(trial, FAILED, node)
    report.run_id, report.attempt = run_id, attempt or tries
    report.error = f"trial process lost: {_death(exc)}"
    if tries > trial.resources.max_retries and run_id is not None:
        tracker_for(trial).finish_unless_final(run_id, report.error)
    return report


def _death(exc: Exception) -> str:
    """One line on why a worker process died, from Ray's long message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if "exit detail" in line.lower()), None)
    return (detail or (lines[0] if lines else "no error recorded (killed, out of memory, or its node was lost)"))[:500]
