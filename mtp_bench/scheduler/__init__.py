"""Running a suite's trials: :func:`run_suite` (:mod:`.grid`) checks the grid can start, opens the parent MLflow
run, hands the trials to a scheduler (in-process, :mod:`.inprocess`; Ray, :mod:`.ray_scheduler` and :mod:`.pool`;
several devices, :mod:`.ray_train`) and closes the invocation. Around each trial every scheduler does the same
(:mod:`.attempt`): its MLflow run, skip/resume/retry, failure isolation.

Schedulers know nothing about methods or metrics: they place trials and collect :class:`TrialReport`s.
"""

from mtp_bench.errors import RayStartError, SchedulingError
from mtp_bench.scheduler.grid import SuiteOutcome, run_suite
from mtp_bench.scheduler.reports import FAILED, FINISHED, SKIPPED, TrialReport

__all__ = ["FAILED", "FINISHED", "SKIPPED", "RayStartError", "SchedulingError", "SuiteOutcome", "TrialReport",
           "run_suite"]
