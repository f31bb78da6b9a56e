"""Everything MLflow, in one module: run hierarchy, parameter flattening, metric-name sanitising, artifacts, retries
and the look-ups resume needs.

Run shape: one experiment per suite; a parent run per ``mtp-bench run`` invocation; a child run per trial, tagged
with suite, method, seed, trial id and git commit. Metric names are the same for every method, so runs compare
side by side.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag

log = logging.getLogger(__name__)
T = TypeVar("T")

TAG_SUITE = "mtp_bench.suite"
TAG_METHOD = "mtp_bench.method"
TAG_METHOD_NAME = "mtp_bench.method_name"
TAG_SEED = "mtp_bench.seed"
TAG_TRIAL_ID = "mtp_bench.trial_id"
TAG_KIND = "mtp_bench.kind"  # "invocation" (parent) or "trial" (child)
TAG_GIT = "mlflow.source.git.commit"
TAG_PARENT = "mlflow.parentRunId"
TAG_ERROR = "mtp_bench.error"

_SOURCE = Path(__file__).resolve().parent
_ILLEGAL = re.compile(r"[^A-Za-z0-9_\-. /]")
_MAX_PARAM_VALUE = 6000
_MAX_BATCH = 900  # MLflow caps a log_batch at 1000 metrics


def metric_name(name: str) -> str:
    """An MLflow-legal metric name, stable across methods. lm-eval's ``exact_match,strict-match`` becomes
    ``exact_match/strict-match``; any other illegal character becomes ``_``."""
    return _ILLEGAL.sub("_", name.replace(",", "/")).strip("/") or "_"


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """Dotted ``key -> string`` pairs of a nested config, for MLflow params."""
    out: dict[str, str] = {}
    if isinstance(config, dict):
        for key, value in config.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(config, list) and config and all(isinstance(v, dict) for v in config):
        for index, value in enumerate(config):
            out.update(flatten(value, f"{prefix}.{index}"))
    else:
        text = json.dumps(config) if not isinstance(config, str) else config
        out[prefix] = text[:_MAX_PARAM_VALUE]
    return out


def _retrying(action: Callable[[], T], what: str, attempts: int = 12) -> T:
    """SQLite allows one writer at a time: parallel trials see "database is locked". Retry with jittered backoff
    rather than lose a metric."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:
            text = str(exc).lower()
            if attempt == attempts - 1 or ("locked" not in text and "busy" not in text):
                raise
            delay = min(5.0, 0.1 * 2**attempt) * (0.5 + random.random())
            log.debug("MLflow %s: database busy, retrying in %.2fs", what, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _write_ahead_log(path: Path) -> None:
    """Put a SQLite store in write-ahead-log mode (persistent, once per file): readers no longer block the writer,
    so parallel trials wait far less on "database is locked". Best effort: the retries above still apply."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(path, timeout=1.0)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        log.debug("could not switch %s to WAL mode: %s", path, exc)


def git_commit(cwd: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def artifact_root_for(uri: str) -> str | None:
    """Beside a SQLite store, an absolute artifact folder (MLflow's default ``./mlruns`` moves with the working
    directory, and Ray trials run in their own)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        return (Path(uri[len(prefix) :]).parent / "mlartifacts").resolve().as_uri()
    return None


class Tracker:
    """An MLflow store and one experiment, used through explicit run ids (safe in threads and processes)."""

    def __init__(self, uri: str, experiment: str):
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_name = experiment
        self.experiment_id = _retrying(lambda: self._experiment_id(experiment), "experiment")
        if uri.startswith("sqlite:///"):
            _write_ahead_log(Path(uri[len("sqlite:///") :]))

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifact_root_for(self.uri))
        except Exception:  # created meanwhile by a parallel process
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    # ----------------------------------------------------------------------------------------------- runs ----
    def start_run(self, name: str, tags: dict[str, str], parent_id: str | None = None) -> str:
        tags = dict(tags)
        if parent_id:
            tags[TAG_PARENT] = parent_id
        # The code that ran is this checkout's, wherever the run started; an installed wheel has no repository,
        # and then the working directory's (the user's project) is the best record.
        commit = git_commit(_SOURCE) or git_commit()
        if commit:
            tags.setdefault(TAG_GIT, commit)
        run = _retrying(lambda: self.client.create_run(self.experiment_id, tags=tags, run_name=name), "create_run")
        return run.info.run_id

    def reopen(self, run_id: str) -> None:
        """Mark an interrupted run as running again (resume writes into the same run: no duplicates)."""
        _retrying(lambda: self.client.update_run(run_id, status="RUNNING"), "update_run")

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        _retrying(lambda: self.client.set_terminated(run_id, status=status), "set_terminated")

    def fail(self, run_id: str, error: str) -> None:
        """Mark FAILED with the error attached (tag for tables, text artifact for the whole traceback)."""
        self.set_tags(run_id, {TAG_ERROR: error.strip().splitlines()[-1][:5000] if error.strip() else "error"})
        self.log_text(run_id, error, "error.txt")
        self.finish(run_id, "FAILED")

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        batch = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        _retrying(lambda: self.client.log_batch(run_id, tags=batch), "set_tags")

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        existing = self.client.get_run(run_id).data.params
        items = [Param(k, v) for k, v in params.items() if k not in existing]  # params are write-once
        for start in range(0, len(items), 90):
            chunk = items[start : start + 90]
            _retrying(lambda chunk=chunk: self.client.log_batch(run_id, params=chunk), "log_params")

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        items = [Metric(metric_name(k), float(v), now, step) for k, v in metrics.items() if v is not None]
        for start in range(0, len(items), _MAX_BATCH):
            chunk = items[start : start + _MAX_BATCH]
            _retrying(lambda chunk=chunk: self.client.log_batch(run_id, metrics=chunk), "log_metrics")

    # ------------------------------------------------------------------------------------------ artifacts ----
    def log_text(self, run_id: str, text: str, path: str) -> None:
        _retrying(lambda: self.client.log_text(run_id, text, path), "log_text")

    def log_dict(self, run_id: str, data: Any, path: str) -> None:
        _retrying(lambda: self.client.log_dict(run_id, data, path), "log_dict")

    def log_jsonl(self, run_id: str, rows: Iterable[dict[str, Any]], path: str) -> None:
        self.log_text(run_id, "".join(json.dumps(row, default=str) + "\n" for row in rows), path)

    def log_file(self, run_id: str, local_path: str | Path, artifact_dir: str | None = None) -> None:
        _retrying(lambda: self.client.log_artifact(run_id, str(local_path), artifact_dir), "log_artifact")

    def log_folder(self, run_id: str, local_dir: str | Path, artifact_dir: str | None = None) -> None:
        _retrying(lambda: self.client.log_artifacts(run_id, str(local_dir), artifact_dir), "log_artifacts")

    def log_figure(self, run_id: str, figure: Any, path: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / Path(path).name
            figure.savefig(file, dpi=120, bbox_inches="tight")
            parent = str(Path(path).parent)
            self.log_file(run_id, file, None if parent == "." else parent)

    # ------------------------------------------------------------------------------------------- look-ups ----
    def trial_runs(self, trial_id: str | None = None, suite: str | None = None) -> list[Any]:
        """Child runs of this experiment, newest first, optionally for one trial id or suite."""
        filters = [f"tags.`{TAG_KIND}` = 'trial'"]
        if trial_id:
            filters.append(f"tags.`{TAG_TRIAL_ID}` = '{trial_id}'")
        if suite:
            filters.append(f"tags.`{TAG_SUITE}` = '{suite}'")
        query = " and ".join(filters)
        runs: list[Any] = []
        token = None
        while True:
            page = _retrying(
                lambda token=token: self.client.search_runs(
                    [self.experiment_id], query, order_by=["attributes.start_time DESC"], page_token=token
                ),
                "search_runs",
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def finished_trial_ids(self) -> set[str]:
        return {
            r.data.tags[TAG_TRIAL_ID]
            for r in self.trial_runs()
            if r.info.status == RunStatus.to_string(RunStatus.FINISHED) and TAG_TRIAL_ID in r.data.tags
        }


def configure_quiet() -> None:
    """MLflow's own chatter (alembic migrations, emoji banners) has no place in our output."""
    for name in ("alembic", "mlflow", "mlflow.store.db.utils", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)
