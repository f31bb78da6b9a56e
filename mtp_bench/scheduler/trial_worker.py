"""The body of a Ray grid's pool worker: a long-lived process that runs trial after trial, so that torch,
transformers, MLflow and the grid's plugins are imported once per process, not once per trial.

Nothing leaks from one trial to the next in a reused worker: what a trial may change in the process (torch threads,
deterministic algorithms, the global random generators, the working directory) is set again at the start of every
trial from that trial's config alone (:func:`~mtp_bench.scheduler.worker.reset_process_state`; the trial seeds the
generators itself), and a trial that failed retires its process (the pool starts a fresh one).
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import asdict
from typing import Any

from mtp_bench.scheduler.worker import enter_driver_directory, node_id, reset_process_state
from mtp_bench.suite.config import TrialConfig


class TrialWorker:
    """The body of one pool worker (a Ray actor holding one trial's resources): warms up when created (imports,
    the grid's plugins), then runs the trials it is given one at a time, each in its own MLflow run. The store is
    opened once per worker and experiment, not once per trial."""

    def __init__(self, cwd: str, warm: dict[str, Any] | None = None):
        enter_driver_directory(cwd)
        self.cwd = cwd
        self.trackers: dict[tuple[str, str], Any] = {}
        import torch  # noqa: F401 - imported now, before any trial's timer starts

        import mtp_bench.trial  # noqa: F401 - transformers, the loop and evaluation
        from mtp_bench import tracking

        tracking.configure_quiet()
        if warm is not None:
            trial = TrialConfig.model_validate(warm)
            self._preload(trial)
            # opened (and MLflow imported) while the driver still prepares the grid; an error shows in the trial
            with contextlib.suppress(Exception):
                self._tracker(trial)

    def ready(self) -> str:
        """This worker's node, once it has warmed up."""
        return node_id()

    def run(self, dump: dict[str, Any], expected_id: str, *, parent_id: str | None, resume: bool,
            mailbox: Any) -> dict[str, Any]:
        """Train and evaluate one trial, recording it in its MLflow run; returns its report (as a dict)."""
        import torch

        from mtp_bench.scheduler.attempt import execute_trial
        from mtp_bench.scheduler.live import Sender
        from mtp_bench.scheduler.reports import FAILED, new_report

        enter_driver_directory(self.cwd)
        trial = TrialConfig.model_validate(dump)
        node = node_id()
        sender = Sender(mailbox, expected_id, node)
        if trial.trial_id != expected_id:  # same config, another hash: this node runs another mtp-bench version
            report = new_report(trial, FAILED, node)
            report.trial_id = expected_id
            report.error = (f"this worker computes trial id {trial.trial_id} for the driver's {expected_id}: install "
                            "the same mtp-bench version on every node (and restart Ray after changing it)")
            return asdict(report)
        reset_process_state(trial)
        run = None
        if trial.resources.num_workers > 1:
            from mtp_bench.scheduler.ray_train import run_distributed

            run = run_distributed
        self._preload(trial)  # imports are not the trial's time
        try:
            tracker = self._tracker(trial)
        except Exception:  # noqa: BLE001 - execute_trial opens it again and reports the error in the trial's report
            tracker = None
        report = execute_trial(trial, parent_id=parent_id, resume=resume, progress=False, node=node, run=run,
                               on_metrics=sender.metrics, on_open=sender.opened, tracker=tracker)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the process runs the next trial
        return asdict(report)

    @staticmethod
    def _preload(trial: TrialConfig) -> None:
        from mtp_bench.trial.build import preload

        preload(trial)

    def _tracker(self, trial: TrialConfig) -> Any:
        key = (trial.tracking.uri, trial.tracking.experiment or trial.suite)
        if key not in self.trackers:
            from mtp_bench.tracking import Tracker

            self.trackers[key] = Tracker(*key)
        return self.trackers[key]
