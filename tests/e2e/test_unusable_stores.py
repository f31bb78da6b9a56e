"""Stores that cannot be used, met through the real command line: another application's SQLite file, an empty one,
a damaged one, a read-only folder, an immutable file, an older or a newer MLflow schema, a deleted experiment, a
store locked by another process, a tracking server that does not answer. Each is refused in seconds with exit 2 and
at most five lines naming the store, what is wrong and what to do, no traceback, and nothing written: ``run`` and the
reading commands (``compare``, ``steps``, ``ui``) leave the file byte for byte as it was and its folder as it was.

The stores are real SQLite files (one MLflow store is made per module and copied); the server is a local port with
nothing listening; the lock is a second process holding SQLite's write lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import write_own_store_suite
from mtp_bench import cli
from mtp_bench.tracking import health

EXPERIMENT = "bad_input"  # the base suite's name


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MLflow store with the base suite's experiment and one finished run (made once: MLflow's migrations
    take seconds)."""
    from mtp_bench.tracking import Tracker

    path = tmp_path_factory.mktemp("made") / "mlflow.db"
    tracker = Tracker(f"sqlite:///{path}", EXPERIMENT)
    tracker.finish(tracker.start_run("made", {}))
    return path


def _copy(store: Path, folder: Path) -> Path:
    """A consistent copy of a (WAL-mode) store, as one file."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "mlflow.db"
    with contextlib.closing(sqlite3.connect(store)) as source, contextlib.closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
    with contextlib.closing(sqlite3.connect(target)) as db:
        db.execute("PRAGMA journal_mode=DELETE")  # one file, nothing beside it
    return target


def _sql(path: Path, statement: str, *args: object) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(statement, args)
        db.commit()


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its content's hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def _suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uri: str) -> Path:
    return write_own_store_suite(tmp_path, monkeypatch, tracking={"uri": uri, "workdir": str(tmp_path / "trials")})


def refused(args: list[str], capsys: pytest.CaptureFixture[str], watched: Path, *expected: str,
            within: float = 30.0) -> str:
    """Run the CLI: exit 2, one to five lines, no traceback, the expected words, in time, and ``watched`` (the
    store's folder) exactly as it was."""
    before = _snapshot(watched)
    started = time.monotonic()
    code = cli.main(args)
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, f"exit {code}; stderr:\n{err}\nstdout:\n{captured.out[-2000:]}"
    assert 1 <= len(err.strip().splitlines()) <= 5 and "Traceback" not in err, err
    for text in expected:
        assert text in err, f"{text!r} not in:\n{err}"
    assert elapsed < within, f"took {elapsed:.1f} s"
    assert _snapshot(watched) == before, "the store or its folder changed"
    return err


def _commands(suite: Path, store: Path) -> list[list[str]]:
    """``run`` and every command that only reads a store, pointed at ``store``."""
    return [["run", str(suite), "--no-ray", "--no-compare"], ["compare", str(suite), "--output", "out"],
            ["steps", str(suite)], ["compare", "--experiment", EXPERIMENT, "--store", f"sqlite:///{store}"]]


# --------------------------------------------------------------------------------------- not an MLflow store ----
def test_another_applications_database_is_refused_by_every_command(tmp_path, monkeypatch, capsys) -> None:
    store = tmp_path / "db" / "app.db"
    store.parent.mkdir()
    _sql(store, "CREATE TABLE users (id INTEGER, name TEXT)")
    suite = _suite(tmp_path, monkeypatch, f"sqlite:///{store}")
    for args in _commands(suite, store):
        refused(args, capsys, store.parent, f"store {store} is a SQLite database but not an MLflow store",
                "its tables: users")
    refused(["ui", "--store", str(store)], capsys, store.parent, "not an MLflow store")
    with contextlib.closing(sqlite3.connect(store)) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["users"]  # no MLflow table added


def test_an_empty_file_is_not_written_into_by_reading_commands(tmp_path, monkeypatch, capsys) -> None:
    store = tmp_path / "db" / "mlflow.db"
    store.parent.mkdir()
    store.touch()
    suite = _suite(tmp_path, monkeypatch, f"sqlite:///{store}")
    for args in _commands(suite, store)[1:]:
        refused(args, capsys, store.parent, f"store {store} is an empty file, not an MLflow store")
    refused(["ui", "--store", str(store)], capsys, store.parent, "not an MLflow store")
    assert store.stat().st_size == 0


@pytest.mark.parametrize("damage", ["random bytes", "a damaged page"])
def test_a_damaged_store_is_refused(tmp_path, monkeypatch, capsys, mlflow_store, damage) -> None:
    if damage == "random bytes":
        store = tmp_path / "db" / "mlflow.db"
        store.parent.mkdir()
        store.write_bytes(os.urandom(64 * 1024))
    else:
        store = _copy(mlflow_store, tmp_path / "db")
        with store.open("r+b") as handle:  # past the header and the schema: a table's page
            handle.seek(4096 * 3)
            handle.write(os.urandom(4096 * 4))
    suite = _suite(tmp_path, monkeypatch, f"sqlite:///{store}")
    for args in _commands(suite, store):
        refused(args, capsys, store.parent, f"store {store}", "restore it from a backup, or use another store")


# -------------------------------------------------------------------------------------- cannot be written ----
@contextlib.contextmanager
def _read_only(target: Path) -> Iterator[str]:
    """``target`` made unwritable for this process: ``chattr +i`` (which stops root too), else chmod when not root;
    yields how. Skips when neither can."""
    if shutil_which("chattr") and subprocess.run(["chattr", "+i", str(target)], capture_output=True).returncode == 0:
        try:
            yield "immutable"
        finally:
            subprocess.run(["chattr", "-i", str(target)], check=True)
        return
    if os.geteuid() == 0:
        pytest.skip("running as root without chattr: a read-only mode would not stop the writes")
    mode = target.stat().st_mode
    target.chmod(0o555 if target.is_dir() else 0o444)
    try:
        yield "read-only"
    finally:
        target.chmod(mode)


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


@pytest.mark.parametrize("what", ["folder of a new store", "folder of a store", "store file"])
def test_a_store_that_cannot_be_written_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys,
                                                                        mlflow_store, what) -> None:
    folder = tmp_path / "db"
    store = folder / "mlflow.db"
    if what == "folder of a new store":
        folder.mkdir()
        store = folder / "sub" / "mlflow.db"
    else:
        _copy(mlflow_store, folder)
    suite = _suite(tmp_path, monkeypatch, f"sqlite:///{store}")
    target = folder if what.startswith("folder") else store
    with _read_only(target) as how:
        expected = "immutable (chattr +i)" if how == "immutable" else "read-only"
        err = refused(["run", str(suite), "--no-ray", "--no-compare"], capsys, folder, str(store), expected)
    assert ("cannot create the store" if what == "folder of a new store" else "cannot be written") in err
    assert not (tmp_path / "trials").exists()


# ------------------------------------------------------------------------------------ another MLflow's store ----
@pytest.mark.parametrize("schema", ["older", "newer"])
def test_a_store_of_another_mlflow_schema_is_refused_and_not_migrated(tmp_path, monkeypatch, capsys, mlflow_store,
                                                                      schema) -> None:
    head, known = health._schema_revisions()
    oldest = sorted(known)[0] if schema == "older" else "ffffffffffff"
    assert head is not None and oldest != head
    store = _copy(mlflow_store, tmp_path / "db")
    _sql(store, "UPDATE alembic_version SET version_num = ?", oldest)
    suite = _suite(tmp_path, monkeypatch, f"sqlite:///{store}")
    expected = (f"`mlflow db upgrade sqlite:///{store}`" if schema == "older"
                else "was written by a newer MLflow (schema revision ffffffffffff")
    for args in _commands(suite, store):
        refused(args, capsys, store.parent, f"store {store}", expected)
    with contextlib.closing(sqlite3.connect(store)) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == oldest


def test_a_deleted_experiment_is_refused_with_how_to_restore_it(tmp_path, monkeypatch, capsys, mlflow_store) -> None:
    from mlflow import MlflowClient

    store = _copy(mlflow_store, tmp_path / "db")
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    client.delete_experiment(experiment.experiment_id)
    with contextlib.closing(sqlite3.connect(store)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
    suite = _suite(tmp_path, monkeypatch, f"sqlite:///{store}")
    for args in _commands(suite, store):
        refused(args, capsys, store.parent, f"experiment '{EXPERIMENT}'", "is deleted",
                f"mlflow experiments restore --experiment-id {experiment.experiment_id}")


# -------------------------------------------------------------------------------------- locked, unanswered ----
def test_a_store_locked_by_another_process_is_refused_within_seconds(tmp_path, monkeypatch, capsys,
                                                                      mlflow_store) -> None:
    monkeypatch.setattr(health, "LOCK_WAIT_S", 1.0)
    store = _copy(mlflow_store, tmp_path / "db")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"), str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        suite = _suite(tmp_path, monkeypatch, f"sqlite:///{store}")
        refused(["run", str(suite), "--no-ray", "--no-compare"], capsys, store.parent,
                f"store {store} is locked by another process", within=15)
    finally:
        holder.kill()
        holder.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_tracking_server_that_does_not_answer_is_refused_within_seconds(tmp_path, monkeypatch, capsys) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"
    suite = _suite(tmp_path, monkeypatch, uri)
    for args in (["run", str(suite), "--no-ray", "--no-compare"], ["compare", str(suite)],
                 ["compare", "--experiment", EXPERIMENT, "--store", uri]):
        refused(args, capsys, tmp_path, f"no MLflow tracking server answers at {uri}", "nothing listens there",
                within=15)
