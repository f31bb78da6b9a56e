"""The driver's side of a Tune grid: a Tune callback that drains the workers' mailbox into the live view, collects
the trials' reports, and records in MLflow the trials whose process died before it could report."""

from __future__ import annotations

import time
from typing import Any

from mtp_bench.scheduler.live import GridView
from mtp_bench.scheduler.reports import FAILED, TrialReport, new_report
from mtp_bench.suite.models import TrialConfig


def bridge_class() -> type:
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
            self.view.placed(self._id(trial))

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
                if trial_id not in self.by_id:
                    continue
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


def silent_progress() -> Any:
    """Tune prints a line per finished trial unless a progress callback of its own kind is present: give it one
    that prints nothing (the live view is ours)."""
    from ray.tune.progress_reporter import TrialProgressCallback

    class Silent(TrialProgressCallback):
        def log_result(self, trial: Any, result: dict, error: bool = False) -> None:
            pass

        def _print(self, msg: str) -> None:
            pass

    return Silent()


def _tune_error(trial: Any) -> str:
    try:
        error = trial.get_error()
    except Exception:  # noqa: BLE001 - best effort: the error file may be gone with its node
        error = None
    lines = [line for line in str(error or "").strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "no error recorded (killed, out of memory, or its node was lost)"


def _record_lost(trial: TrialConfig, run_id: str, error: str | None) -> None:
    from mtp_bench.tracking import Tracker

    Tracker(trial.tracking.uri, trial.tracking.experiment or trial.suite).finish_unless_final(run_id, error)


