"""A new SQLite store is a copy of the cached empty store: the same schema as a store MLflow builds itself, usable
at once, its Default experiment's artifacts beside it; and when the copy cannot be made, MLflow builds the store as
before."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from mtp_bench.tracking import Tracker, new_store


def _schema(path: Path) -> tuple[list[tuple], list[tuple]]:
    """Every table and index with the clauses of its SQL as a sorted list, and the schema revision. Sorted, because
    MLflow's own migrations write a table's constraints in an order that differs from one process to the next."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        objects = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        revision = db.execute("SELECT version_num FROM alembic_version").fetchall()
    return [(kind, name, sorted(part.strip() for part in (sql or "").split(","))) for kind, name, sql in objects], \
        revision


def _default_location(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0").fetchone()[0]


def test_a_copied_store_has_the_schema_mlflow_builds_and_records_runs(tmp_path: Path) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    built = tmp_path / "built" / "mlflow.db"
    built.parent.mkdir()
    SqlAlchemyStore(f"sqlite:///{built}", (tmp_path / "built").as_uri()).engine.dispose()

    copied = tmp_path / "copied" / "mlflow.db"
    tracker = Tracker(f"sqlite:///{copied}", "exp")
    assert new_store.empty_store().is_file()  # the first new store built the cached empty one
    assert _schema(copied) == _schema(built)
    assert _default_location(copied) == (tmp_path / "copied" / "mlartifacts").as_uri() + "/0"
    run = tracker.start_run("one", {})
    tracker.client.log_metric(run, "loss", 1.5, step=1)
    assert [m.value for m in tracker.client.get_metric_history(run, "loss")] == [1.5]

    reopened = Tracker(f"sqlite:///{copied}", "exp")  # an existing store is opened, never replaced
    assert reopened.experiment_id == tracker.experiment_id and reopened.client.get_run(run).info.run_id == run


def test_without_the_empty_store_mlflow_builds_the_new_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Path:
        raise OSError("cache not writable")

    monkeypatch.setattr(new_store, "empty_store", broken)
    path = tmp_path / "mlflow.db"
    tracker = Tracker(f"sqlite:///{path}", "exp")
    assert path.is_file() and tracker.client.get_experiment(tracker.experiment_id).name == "exp"
    assert not list(tmp_path.glob(".mlflow.db.*"))  # no partial copy left behind
