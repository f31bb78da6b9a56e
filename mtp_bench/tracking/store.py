"""Reading the MLflow store back, for analysis and the UI: trial runs, metric histories and per-question prediction
artifacts of one experiment. Nothing here writes; nothing outside ``mtp_bench/tracking/`` needs mlflow to read.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtp_bench.errors import StoreError
from mtp_bench.tracking import KIND_TRIAL, TAG_CELL, TAG_KIND, TAG_METHOD, TAG_SEED, TAG_SUITE, TAG_TRIAL_ID
from mtp_bench.tracking.health import check_store

__all__ = ["DEFAULT_STORE", "Store", "StoreError", "TrialRun", "absolute_store", "default_store"]

DEFAULT_STORE = "sqlite:///results/mlflow.db"
_SQLITE = "sqlite:///"


def absolute_store(uri: str) -> str:
    """A relative SQLite URI made absolute against the working directory (other URIs unchanged)."""
    if uri.startswith(_SQLITE) and not uri.startswith(_SQLITE + "/"):
        path = uri[len(_SQLITE):]
        try:
            return _SQLITE + str(Path(path).resolve())
        except (OSError, RuntimeError):  # a symlink loop: the check of the store names it
            return _SQLITE + os.path.abspath(path)
    return uri


def default_store(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else :data:`DEFAULT_STORE`; made absolute."""
    return absolute_store(uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE)


@dataclass
class TrialRun:
    """One trial's MLflow run as analysis sees it: its identity tags, status, final metrics and params."""

    run_id: str
    trial_id: str
    method: str
    seed: int | None
    cell: str
    status: str
    metrics: dict[str, float]
    tags: dict[str, str]
    params: dict[str, str]

    @property
    def label(self) -> str:
        return " ".join(part for part in (self.method, self.cell, f"seed={self.seed}") if part)


def _trial_run(run: Any) -> TrialRun:
    tags = run.data.tags
    seed = tags.get(TAG_SEED)
    return TrialRun(run.info.run_id, tags.get(TAG_TRIAL_ID, run.info.run_id), tags.get(TAG_METHOD, "?"),
                    int(seed) if seed and seed.lstrip("-").isdigit() else None, tags.get(TAG_CELL, ""),
                    run.info.status, dict(run.data.metrics), dict(tags), dict(run.data.params))


class Store:
    """Read access to one experiment: trial runs, metric histories and prediction artifacts (cached)."""

    def __init__(self, uri: str, experiment: str):
        from mlflow import MlflowClient

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per artifact otherwise
        check_store(uri, write=False, experiment=experiment)  # MLflow would write its tables into any file
        self.uri, self.client = uri, MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None and found.lifecycle_stage == "deleted":
            raise StoreError(f"experiment {experiment!r} in {uri} is deleted (in MLflow's trash): restore it with "
                             f"`mlflow experiments restore --experiment-id {found.experiment_id}`, or pass another")
        if found is None:
            names = ", ".join(e.name for e in self.client.search_experiments()) or "none"
            raise StoreError(f"no experiment {experiment!r} in {uri}; experiments there: {names}")
        self.experiment_id = found.experiment_id
        self._rows: dict[tuple[str, str], list[dict[str, Any]] | None] = {}

    def trial_runs(self, suite: str | None) -> list[TrialRun]:
        """Every trial run of the experiment (of ``suite`` when given), newest first."""
        query = f"tags.`{TAG_KIND}` = '{KIND_TRIAL}'" + (f" and tags.`{TAG_SUITE}` = '{suite}'" if suite else "")
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], query, order_by=["attributes.start_time DESC"],
                                           page_token=token)
            runs += [_trial_run(run) for run in page]
            token = page.token
            if not token:
                return runs

    def history(self, run_id: str, metric: str) -> dict[int, float]:
        """A metric's logged values by step."""
        return {m.step: m.value for m in self.client.get_metric_history(run_id, metric)}

    def scores(self, run_id: str, path: str, key: str) -> dict[int, float] | None:
        """Per-question scores ``index -> value`` from a predictions artifact; None when it is not there. Rows
        without ``scores`` (a scorer with one verdict) use their boolean ``correct``."""
        if (run_id, path) not in self._rows:
            try:
                with tempfile.TemporaryDirectory(prefix="mtp-bench-store-") as folder:  # read, then gone
                    local = self.client.download_artifacts(run_id, path, folder)
                    text = Path(local).read_text()
                self._rows[(run_id, path)] = [json.loads(line) for line in text.splitlines() if line.strip()]
            except Exception:  # absent artifact (logging off, older run): no per-question statistics
                self._rows[(run_id, path)] = None
        rows = self._rows[(run_id, path)]
        if rows is None:
            return None
        out = {}
        for row in rows:
            value = row["scores"].get(key) if "scores" in row else row.get("correct")
            if value is None or "index" not in row:
                return None
            out[int(row["index"])] = float(value)
        return out
