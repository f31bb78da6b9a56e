"""A new SQLite store starts as a copy of an empty one instead of being built by MLflow.

MLflow builds a new SQLite store by replaying every schema migration it has ever shipped (dozens in 3.x): seconds
for each new store, paid by every first run and by every test that opens a fresh store. The empty store is built
that way once per MLflow version, kept in the harness cache, and copied: the same tables at the same schema
revision, in milliseconds. Anything that goes wrong here only costs the time saved: MLflow then builds the store
itself, as it always did.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from mtp_bench.cache import cache_root

log = logging.getLogger(__name__)


def seed_new_store(path: Path, default_artifacts: str | None) -> None:
    """Put an empty store at ``path`` if no file is there yet (the caller holds the store's creation lock).
    ``default_artifacts``: where MLflow's ``Default`` experiment keeps artifacts (beside the store, like ours),
    since the copied store would otherwise name the folder it was built in."""
    if path.exists():
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        shutil.copyfile(empty_store(), partial)
        with contextlib.closing(sqlite3.connect(partial)) as db:
            if default_artifacts is not None:
                db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                           (f"{default_artifacts.rstrip('/')}/0",))
            db.commit()
        os.replace(partial, path)  # whole or absent: a crash here never leaves half a store
    except Exception as exc:  # noqa: BLE001 - never fatal: MLflow creates the store itself
        log.debug("new store %s not copied from the empty one (%s); MLflow builds it", path, exc)
        partial.unlink(missing_ok=True)


def empty_store() -> Path:
    """The cached empty store of the installed MLflow, built on first use."""
    import mlflow
    import sqlalchemy

    target = cache_root() / "mlflow" / f"empty-store-mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}.db"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as folder:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        built = Path(folder) / "empty.db"
        store = SqlAlchemyStore(f"sqlite:///{built}", Path(folder).as_uri())  # creates every table
        store.engine.dispose()
        os.replace(built, target)  # atomic: two processes building at once both leave a whole file
    return target
