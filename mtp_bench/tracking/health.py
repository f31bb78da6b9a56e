"""Is a store usable, before MLflow touches it? MLflow opens whatever it is given: it adds its tables to another
application's SQLite file, writes them into an empty one a reading command was pointed at, migrates an older schema,
waits minutes on a locked database or a server that does not answer, and then fails with a long traceback.

:func:`check_store` looks first, with the standard library only (no mlflow import), and refuses in one line that
names the store, what is wrong and what to do: a :class:`StoreError` (bad input, exit 2), raised before anything is
written. :func:`describe_store_error` turns an error met later, mid-run (a disk that fills up, a store that became
read-only or locked), into the same kind of line.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import re
import socket
import sqlite3
import urllib.error
import urllib.request
from functools import cache
from pathlib import Path
from urllib.parse import quote, urlparse

from mtp_bench.errors import StoreError

SQLITE = "sqlite:///"
LOCK_WAIT_S = 5.0
"""How long a SQLite store may stay locked by another process before the check calls it locked (MLflow's own
retries would wait minutes)."""

SERVER_WAIT_S = 5.0
"""How long a tracking server may take to answer the check's request (MLflow retries for minutes)."""

QUICK_CHECK_MAX_BYTES = 512 * 1024**2
"""Stores up to this size get SQLite's ``quick_check`` (about a second per 300 MB); larger ones only the cheap checks
(damage met later is still one line: :func:`describe_store_error`)."""

MLFLOW_TABLES = frozenset({"experiments", "runs", "alembic_version"})


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    return Path(uri[len(SQLITE):]) if uri.startswith(SQLITE) else None


def check_store(uri: str, *, write: bool, experiment: str | None = None) -> None:
    """Raise :class:`StoreError` unless the store at ``uri`` can be used: written to (``write``: ``run``), or read
    without writing anything (``compare``, ``steps``, ``reproduce``). ``experiment``, when given, must not be a
    deleted one. Stores other than SQLite files and HTTP(S) servers are left to MLflow."""
    path = sqlite_file(uri)
    if path is not None:
        _check_sqlite(path, uri, write=write, experiment=experiment)
    elif urlparse(uri).scheme.lower() in ("http", "https"):
        _check_server(uri)


# ------------------------------------------------------------------------------------------------- SQLite ----
def _check_sqlite(path: Path, uri: str, *, write: bool, experiment: str | None) -> None:
    try:
        exists = path.exists()
        if not exists and os.path.lexists(path):  # a dangling link or a link loop
            os.stat(path)
    except OSError as exc:
        raise StoreError(f"store {path}: {exc.strerror or exc}; point tracking.uri / --store at a file") from None
    if not exists:
        if not write:
            raise StoreError(f"no MLflow store at {path} (run the suite first, or pass --store)")
        _check_creatable(path)
        return
    if not path.is_file():
        raise StoreError(f"store {path} is not a file (a directory?); point tracking.uri / --store at a .db file")
    if not os.access(path, os.R_OK):
        raise StoreError(f"store {path} cannot be read (permission denied); use another store or fix its permissions")
    if write:
        _check_writable(path)
    if path.stat().st_size == 0:
        if write:
            return  # an empty file: MLflow makes it a store
        raise StoreError(f"store {path} is an empty file, not an MLflow store (run a suite first, or pass --store)")
    _check_content(path, uri, write=write, experiment=experiment)


def _check_creatable(path: Path) -> None:
    """A new store's folder (or the nearest existing one above it) must be a folder we may write into."""
    folder = path.parent
    try:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    except OSError as exc:
        raise StoreError(f"cannot create the store {path}: {exc.strerror or exc}") from None
    if not folder.is_dir():
        raise StoreError(f"cannot create the store {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create the store {path}: {folder} is {_why_read_only(folder)}; choose a writable "
                         "folder for tracking.uri / --store")


def _check_writable(path: Path) -> None:
    """SQLite writes the file and, beside it, its journal (``-wal``, ``-shm``): both must be writable."""
    for target, what in ((path, "the file"), (path.parent, "its folder")):
        if not os.access(target, os.W_OK):
            raise StoreError(f"store {path} cannot be written: {what} is {_why_read_only(target)}; make it writable, "
                             "or choose another tracking.uri / --store")


def _why_read_only(target: Path) -> str:
    """Read-only, immutable (``chattr +i``: even root may not write) or on a read-only filesystem."""
    with contextlib.suppress(OSError):
        if os.statvfs(target).f_flag & os.ST_RDONLY:
            return "on a read-only filesystem"
    try:
        import fcntl

        fd = os.open(target, os.O_RDONLY)
        try:
            flags = bytearray(8)
            fcntl.ioctl(fd, 0x80086601, flags)  # FS_IOC_GETFLAGS (Linux)
            if int.from_bytes(flags[:4], "little") & 0x10:  # FS_IMMUTABLE_FL
                return "immutable (chattr +i)"
        finally:
            os.close(fd)
    except (OSError, ImportError):
        pass
    return "read-only (permission denied)"


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    mode = "?mode=ro" if read_only else ""
    return sqlite3.connect(f"file:{quote(str(path))}{mode}", uri=True, timeout=LOCK_WAIT_S)


def _check_content(path: Path, uri: str, *, write: bool, experiment: str | None) -> None:
    size = path.stat().st_size
    try:
        with contextlib.closing(_connect(path, read_only=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                if write:
                    return
                raise StoreError(f"store {path} is an empty SQLite database, not an MLflow store (run a suite first, "
                                 "or pass --store)")
            if not tables >= MLFLOW_TABLES:
                shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
                raise StoreError(f"store {path} is a SQLite database but not an MLflow store (its tables: {shown}); "
                                 "point tracking.uri / --store at an MLflow store or a new file")
            revisions = [row[0] for row in db.execute("SELECT version_num FROM alembic_version")]
            _check_schema(path, uri, revisions[0] if revisions else None)
            if experiment is not None:
                _check_experiment(db, path, uri, experiment)
            problem = db.execute("PRAGMA quick_check(1)").fetchone()[0] if size <= QUICK_CHECK_MAX_BYTES else "ok"
            if problem != "ok":
                detail = " ".join(problem.replace("*** in database main ***", "").split())[:200]
                raise StoreError(f"store {path} is damaged ({detail}); restore it from a backup, or use another store")
        if write:
            _check_not_locked(path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(_sqlite_problem(path, exc)) from None


def _sqlite_problem(path: Path, exc: sqlite3.Error) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (f"store {path} is locked by another process (still locked after {LOCK_WAIT_S:g} s); wait for it to "
                "finish, or use another tracking.uri / --store")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return (f"store {path} is damaged or not a SQLite database ({text}); restore it from a backup, or use "
                "another store")
    return f"store {path} cannot be opened: {text}"


def _check_not_locked(path: Path) -> None:
    """Take the write lock and give it back at once (nothing is written): a process that holds it longer than
    :data:`LOCK_WAIT_S` would make every write of the run wait on it."""
    with contextlib.closing(_connect(path, read_only=False)) as db:
        db.isolation_level = None
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")


@cache
def _schema_revisions() -> tuple[str | None, frozenset[str]]:
    """(head revision, every revision) of the installed MLflow's store schema, read from its migration scripts
    (alembic's own reader imports SQLAlchemy: seconds). (None, {}) when they cannot be read."""
    spec = importlib.util.find_spec("mlflow")
    folders = list(spec.submodule_search_locations or []) if spec else []
    revisions: set[str] = set()
    parents: set[str] = set()
    for folder in folders:
        for script in (Path(folder) / "store" / "db_migrations" / "versions").glob("*.py"):
            text = script.read_text(encoding="utf-8", errors="replace")
            found = re.search(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
            down = re.search(r"^down_revision\s*=\s*(.+)$", text, re.M)
            if found:
                revisions.add(found.group(1))
            if down:
                parents.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    heads = revisions - parents
    return (next(iter(heads)) if len(heads) == 1 else None), frozenset(revisions)


def _mlflow_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlflow")
    except PackageNotFoundError:
        return "?"


def _check_schema(path: Path, uri: str, revision: str | None) -> None:
    head, known = _schema_revisions()
    if head is None or revision == head:
        return
    ours = f"MLflow {_mlflow_version()}"
    if revision in known:
        raise StoreError(f"store {path} has an older MLflow schema (revision {revision}; {ours} needs {head}): back "
                         f"it up, then run `mlflow db upgrade {uri}`, or use another store")
    raise StoreError(f"store {path} was written by a newer MLflow (schema revision {revision} is unknown to {ours}): "
                     "upgrade MLflow (pip install -U mlflow), or use another store")


def _check_experiment(db: sqlite3.Connection, path: Path, uri: str, experiment: str) -> None:
    row = db.execute("SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = ?", (experiment,)).fetchone()
    if row is not None and row[1] == "deleted":
        raise StoreError(f"experiment {experiment!r} in store {path} is deleted (in MLflow's trash): restore it "
                         f"with `MLFLOW_TRACKING_URI={uri} mlflow experiments restore --experiment-id {row[0]}`, or "
                         "set tracking.experiment to another name")


# ------------------------------------------------------------------------------------------------- server ----
def _check_server(uri: str) -> None:
    """One short request: a server that does not answer is refused in seconds, not after MLflow's retries."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=SERVER_WAIT_S):
            return
    except urllib.error.HTTPError:
        return  # it answered: MLflow reports what it thinks of the answer
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, socket.timeout | TimeoutError):
            why = f"no answer in {SERVER_WAIT_S:g} s"
        elif isinstance(reason, socket.gaierror):
            why = f"cannot resolve {urlparse(uri).hostname}"
        elif isinstance(reason, OSError) and reason.errno == errno.ECONNREFUSED:
            why = "connection refused: nothing listens there"
        elif isinstance(reason, OSError) and reason.strerror:
            why = reason.strerror
        else:
            why = str(reason)
        raise StoreError(f"no MLflow tracking server answers at {uri} ({why}); start it (`mlflow server --host "
                         "HOST --port PORT`), or use another tracking.uri / --store") from None


# ------------------------------------------------------------------------------------------- mid-run errors ----
_STORE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM})


def is_store_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the store failing (MLflow, SQLAlchemy or SQLite, or a file system refusing a write), not a
    bug or an interruption."""
    if isinstance(exc, OSError) and exc.errno in _STORE_ERRNOS:
        return True
    return type(exc).__module__.split(".")[0] in ("mlflow", "sqlalchemy", "sqlite3")


def describe_store_error(exc: BaseException) -> str:
    """One line on why a store write failed mid-run, with what to do when the cause is known."""
    text = str(exc)
    lowered = text.lower()
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or "disk is full" in lowered or "no space left" in lowered:
        return "the disk is full (No space left on device); free some space"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly database" in lowered or "read-only" in lowered:
        return "it became read-only; make it writable again"
    if "locked" in lowered or "busy" in lowered:
        return "it stayed locked by another process"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return first[:300]
