"""The run lifecycle in an MLflow store: open a run (tagged with the commit that ran), reopen, finish or fail it,
log params, metrics, tags and artifacts, and the look-ups the schedulers need (a trial's runs, a run's status,
metrics and logged steps, an invocation's stale parents). Used through explicit run ids: safe in threads and
processes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from mtp_bench.errors import StoreError
from mtp_bench.tracking import tags as T
from mtp_bench.tracking.naming import metric_name
from mtp_bench.tracking.new_store import seed_new_store
from mtp_bench.tracking.provenance import SOURCE, git_commit
from mtp_bench.tracking.retry import creating, retrying, sqlite_path, write_ahead_log

RUNNING, FINISHED, FAILED, KILLED = "RUNNING", "FINISHED", "FAILED", "KILLED"
FINAL_STATUSES = (FINISHED, FAILED, KILLED)
_MAX_BATCH = 900  # MLflow caps a log_batch at 1000 metrics


def artifact_root_for(uri: str) -> str | None:
    """Beside a SQLite store, an absolute artifact folder (MLflow's default ``./mlruns`` moves with the working
    directory, and Ray trials run in their own)."""
    path = sqlite_path(uri)
    return (path.parent / "mlartifacts").resolve().as_uri() if path is not None else None


class Tracker:
    """An MLflow store and one experiment. Opening it creates a fresh store's tables and the experiment, under a
    file lock, so that parallel first runs do not race."""

    def __init__(self, uri: str, experiment: str):
        self.uri = uri
        self.experiment_name = experiment
        with creating(uri):
            path = sqlite_path(uri)
            if path is not None:
                seed_new_store(path, artifact_root_for(uri))
            self.client = MlflowClient(tracking_uri=uri)
            self.experiment_id = retrying(lambda: self._experiment_id(experiment), "experiment")
            if path is not None:
                write_ahead_log(path)

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None and found.lifecycle_stage == "deleted":  # MLflow would refuse every run in it
            raise StoreError(f"experiment {name!r} in {self.uri} is deleted (in MLflow's trash): restore it with "
                             f"`MLFLOW_TRACKING_URI={self.uri} mlflow experiments restore --experiment-id "
                             f"{found.experiment_id}`, or set tracking.experiment to another name")
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifact_root_for(self.uri))
        except Exception:  # created meanwhile by a process on another machine (a server store)
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    # ----------------------------------------------------------------------------------------- lifecycle ----
    def start_run(self, name: str, tags: dict[str, str], parent_id: str | None = None) -> str:
        tags = dict(tags)
        if parent_id:
            tags[T.TAG_PARENT] = parent_id
        # A trial records its invocation's commit (what was checked out when `run` started, and what the pool's
        # workers imported then), not whatever is checked out when the trial happens to start: a commit made
        # during a long grid must not split it into "code versions". Otherwise the code that runs is this
        # checkout's; an installed wheel has no repository, and then the working directory's is the best record.
        inherited = retrying(lambda: self.client.get_run(parent_id), "get_run").data.tags.get(T.TAG_GIT) \
            if parent_id else None
        commit = inherited or git_commit(SOURCE) or git_commit()
        if commit:
            tags.setdefault(T.TAG_GIT, commit)
        run = retrying(lambda: self.client.create_run(self.experiment_id, tags=tags, run_name=name), "create_run")
        return run.info.run_id

    def reopen(self, run_id: str) -> None:
        """Mark an interrupted run as running again (resume writes into the same run: no duplicates)."""
        retrying(lambda: self.client.update_run(run_id, status=RUNNING), "update_run")

    def finish(self, run_id: str, status: str = FINISHED) -> None:
        retrying(lambda: self.client.set_terminated(run_id, status=status), "set_terminated")

    def fail(self, run_id: str, error: str) -> None:
        """Mark FAILED with the error attached (tag for tables, text artifact for the whole traceback). The status
        is written even when the error cannot be (a full disk refuses the artifact first); then that is raised."""
        problems: list[Exception] = []
        for write in (lambda: self.set_tags(run_id, {T.TAG_ERROR: error.strip().splitlines()[-1][:5000]
                                                      if error.strip() else "error"}),
                      lambda: self.log_text(run_id, error, "error.txt")):
            try:
                write()
            except Exception as exc:  # noqa: BLE001 - raised once the status is written
                problems.append(exc)
        self.finish(run_id, FAILED)
        if problems:
            raise problems[0]

    def finish_unless_final(self, run_id: str, error: str | None) -> None:
        """A run whose process died: KILLED (``error`` None: interrupted, resumable) or FAILED with ``error``,
        unless it already reached a final status itself."""
        if self.status(run_id) in (FINISHED, FAILED):
            return
        if error is None:
            self.finish(run_id, KILLED)
        else:
            self.fail(run_id, error)

    # --------------------------------------------------------------------------------------------- writes ----
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        batch = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        retrying(lambda: self.client.log_batch(run_id, tags=batch), "set_tags")

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        existing = self._run(run_id).data.params
        items = [Param(k, v) for k, v in params.items() if k not in existing]  # params are write-once
        for start in range(0, len(items), 90):
            chunk = items[start : start + 90]
            retrying(lambda chunk=chunk: self.client.log_batch(run_id, params=chunk), "log_params")

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        items = [Metric(metric_name(k), float(v), now, step) for k, v in metrics.items() if v is not None]
        for start in range(0, len(items), _MAX_BATCH):
            chunk = items[start : start + _MAX_BATCH]
            retrying(lambda chunk=chunk: self.client.log_batch(run_id, metrics=chunk), "log_metrics")

    def log_text(self, run_id: str, text: str, path: str) -> None:
        retrying(lambda: self.client.log_text(run_id, text, path), "log_text")

    def log_dict(self, run_id: str, data: Any, path: str) -> None:
        retrying(lambda: self.client.log_dict(run_id, data, path), "log_dict")

    def log_jsonl(self, run_id: str, rows: Iterable[dict[str, Any]], path: str) -> None:
        self.log_text(run_id, "".join(json.dumps(row, default=str) + "\n" for row in rows), path)

    def log_file(self, run_id: str, local_path: str | Path, artifact_dir: str | None = None) -> None:
        retrying(lambda: self.client.log_artifact(run_id, str(local_path), artifact_dir), "log_artifact")

    # ------------------------------------------------------------------------------------------- look-ups ----
    def _run(self, run_id: str) -> Any:
        return retrying(lambda: self.client.get_run(run_id), "get_run")

    def status(self, run_id: str) -> str:
        return self._run(run_id).info.status

    def metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of every metric of a run."""
        return dict(self._run(run_id).data.metrics)

    def logged_steps(self, run_id: str) -> dict[str, set[int]]:
        """Metric name -> the steps already logged for it (what a resumed trial must not log again)."""
        names = list(self._run(run_id).data.metrics)
        return {name: {m.step for m in retrying(lambda name=name: self.client.get_metric_history(run_id, name),
                                                 "get_metric_history")}
                for name in names}

    def _search(self, filters: list[str]) -> list[Any]:
        query = " and ".join(filters)
        runs: list[Any] = []
        token = None
        while True:
            page = retrying(
                lambda token=token: self.client.search_runs(
                    [self.experiment_id], query, order_by=["attributes.start_time DESC"], page_token=token
                ),
                "search_runs",
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def trial_runs(self, trial_id: str | None = None, suite: str | None = None) -> list[Any]:
        """Child runs of this experiment, newest first, optionally for one trial id or suite."""
        filters = [f"tags.`{T.TAG_KIND}` = '{T.KIND_TRIAL}'"]
        if trial_id:
            filters.append(f"tags.`{T.TAG_TRIAL_ID}` = '{trial_id}'")
        if suite:
            filters.append(f"tags.`{T.TAG_SUITE}` = '{suite}'")
        return self._search(filters)

    def invocation_runs(self, suite: str, status: str | None = None) -> list[Any]:
        """Parent runs of a suite in this experiment, newest first, optionally only those with ``status``."""
        filters = [f"tags.`{T.TAG_KIND}` = '{T.KIND_INVOCATION}'", f"tags.`{T.TAG_SUITE}` = '{suite}'"]
        if status:
            filters.append(f"attributes.status = '{status}'")
        return self._search(filters)


def configure_quiet() -> None:
    """MLflow's own chatter (alembic migrations, emoji banners) has no place in our output."""
    for name in ("alembic", "mlflow", "mlflow.store.db.utils", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # It logs every database error it re-raises, traceback and all (a full disk: dozens of lines per write); we
    # report those ourselves, in one line (mtp_bench.tracking.health.describe_store_error).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
