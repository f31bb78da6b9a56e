"""Running a suite's trials: the parent MLflow run, the choice of scheduler, and the summary.

Schedulers know nothing about methods or metrics: they place trials and collect :class:`TrialReport`s.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from mtp_bench.scheduler.common import FAILED, FINISHED, SKIPPED, SchedulingError, TrialReport
from mtp_bench.suite.models import SuiteConfig, TrialConfig

__all__ = ["FAILED", "FINISHED", "SKIPPED", "SuiteRun", "TrialReport", "run_suite"]


@dataclass
class SuiteRun:
    parent_run_id: str
    reports: list[TrialReport]

    @property
    def failed(self) -> list[TrialReport]:
        return [r for r in self.reports if r.status == FAILED]


def ray_available() -> bool:
    return importlib.util.find_spec("mtp_bench.scheduler.ray_scheduler") is not None


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
) -> SuiteRun:
    """Run every trial under one parent run (a new one per invocation) and return their reports. The parent run
    holds, before any trial starts, the raw ``suite.yaml``, the suite as resolved (``${VAR}``, ``overrides``,
    validation: ``suite.resolved.yaml``) and the overrides (tag ``mtp_bench.overrides``, a JSON list)."""
    import json

    import yaml

    from mtp_bench import tracking

    tracking.configure_quiet()
    tracker = tracking.Tracker(suite.tracking.uri, suite.tracking.experiment or suite.name)
    parent_id = tracker.start_run(
        f"{suite.name} ({len(trials)} trials)",
        {tracking.TAG_KIND: "invocation", tracking.TAG_SUITE: suite.name, "mtp_bench.resume": str(resume),
         "mtp_bench.overrides": json.dumps(list(overrides))},
    )
    if suite.tracking.log_artifacts:
        if suite_yaml is not None:
            tracker.log_text(parent_id, suite_yaml, "suite.yaml")
        resolved = yaml.safe_dump(suite.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        tracker.log_text(parent_id, resolved, "suite.resolved.yaml")
    tracker.log_params(parent_id, {"suite": suite.name, "trials": str(len(trials)), "scheduler": _name(use_ray)})
    try:
        if use_ray:
            from mtp_bench.scheduler.ray_scheduler import run_with_ray

            reports = run_with_ray(trials, parent_id=parent_id, resume=resume, address=address, console=console)
        else:
            from mtp_bench.scheduler.inprocess import run_in_process

            reports = run_in_process(trials, parent_id=parent_id, resume=resume)
    except SchedulingError as exc:  # nothing ran: the invocation failed for the reason the user is shown
        tracker.fail(parent_id, str(exc))
        raise
    except BaseException:
        tracker.finish(parent_id, "KILLED")
        raise
    tracker.log_dict(parent_id, [vars(r) for r in reports], "trials.json")
    failed = sum(r.status == FAILED for r in reports)
    tracker.set_tags(parent_id, {"mtp_bench.failed_trials": str(failed)})
    tracker.finish(parent_id, "FAILED" if failed else "FINISHED")
    return SuiteRun(parent_id, reports)


def _name(use_ray: bool) -> str:
    return "ray" if use_ray else "in-process"
