"""One trial, in the order it runs (:mod:`.pipeline`): build (:mod:`.build`) -> train, evaluating periodically
(:mod:`.evaluate`; checkpoint selection in :mod:`.selection`) -> the final scores -> export (:mod:`.export`);
:mod:`.record` is what it reports to the tracker. The schedulers call :func:`run_trial`."""

from mtp_bench.trial.build import Prepared, build_method, build_task, collate_items, count_parameters, prepare
from mtp_bench.trial.pipeline import TrialOutcome, run_trial

__all__ = ["Prepared", "TrialOutcome", "build_method", "build_task", "collate_items", "count_parameters", "prepare",
           "run_trial"]
