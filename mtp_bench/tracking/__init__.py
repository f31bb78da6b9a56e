"""Everything MLflow, and the only package that imports it: tag names (:mod:`.tags`), legal metric names and
flattened params (:mod:`.naming`), the run lifecycle (:mod:`.runs`), retries and safe creation of a shared SQLite
store (:mod:`.retry`), the commit that ran (:mod:`.provenance`), and store reads for analysis (:mod:`.store`).

Run shape: one experiment per suite; a parent run per ``mtp-bench run`` invocation; a child run per trial, tagged
with suite, method, seed, trial id and git commit. Metric names are the same for every method, so runs compare
side by side.

Importing this package is light (no mlflow): :class:`Tracker` and the other MLflow-backed names load on first use.
"""

from __future__ import annotations

from typing import Any

from mtp_bench.tracking.naming import flatten as flatten
from mtp_bench.tracking.naming import metric_name as metric_name
from mtp_bench.tracking.provenance import environment_tags as environment_tags
from mtp_bench.tracking.provenance import git_commit as git_commit
from mtp_bench.tracking.retry import lock_retries as lock_retries
from mtp_bench.tracking.tags import *  # noqa: F403 - every tag name, importable from here

_LAZY = {"Tracker": "runs", "artifact_root_for": "runs", "RUNNING": "runs", "FINISHED": "runs", "FAILED": "runs",
         "KILLED": "runs", "FINAL_STATUSES": "runs", "configure_quiet": "runs"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"mtp_bench.tracking.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'mtp_bench.tracking' has no attribute {name!r}")
