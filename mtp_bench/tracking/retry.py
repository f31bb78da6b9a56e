"""Writing to a SQLite store shared by parallel processes: retries when the database is locked (counted, so that a
run can say how often it waited), write-ahead-log mode, a file lock around a fresh store's first creation, and the
lock an invocation holds beside the store while it runs a suite (so that ``--resume`` can tell it is still alive)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

_retries = 0  # lock retries in this process since it started (see lock_retries)


def lock_retries() -> int:
    """How many store calls this process has retried because the database was locked or busy."""
    return _retries


def retrying(action: Callable[[], T], what: str, attempts: int = 12) -> T:
    """SQLite allows one writer at a time: parallel trials see "database is locked". Retry with jittered backoff
    rather than lose a metric; every retry is counted (:func:`lock_retries`)."""
    global _retries
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:
            text = str(exc).lower()
            if attempt == attempts - 1 or ("locked" not in text and "busy" not in text):
                raise
            _retries += 1
            delay = min(5.0, 0.1 * 2**attempt) * (0.5 + random.random())
            log.debug("MLflow %s: database busy, retrying in %.2fs", what, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


@contextlib.contextmanager
def creating(uri: str) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite store while opening it: MLflow creates a fresh store's tables on first
    use without checking whether another process is doing the same ("table ... already exists"). Other stores need
    no lock (a server serialises its own creation)."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (the race needs two first runs in the same instant)
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def invocation_lock(uri: str, key: str, *, exclusive: bool) -> Iterator[bool]:
    """Held beside a SQLite store (``<db>-run-<hash of key>.lock``) while an invocation of suite ``key`` runs: shared
    by every invocation; ``exclusive`` first asks whether none is running (a ``--resume`` must not take over a live
    one's trials) and yields False if one is. The kernel drops the lock of a killed process: no stale lock. Other
    stores (and platforms without ``fcntl``) yield True: the runs' host, pid and start time tell instead."""
    path = sqlite_path(uri)
    try:
        import fcntl
    except ImportError:
        fcntl = None  # type: ignore[assignment]
    if path is None or fcntl is None:
        yield True
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]
    with open(path.with_name(f"{path.name}-run-{digest}.lock"), "a") as handle:
        if exclusive:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
        fcntl.flock(handle, fcntl.LOCK_SH)  # shared from here on (an exclusive one is converted)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_ahead_log(path: Path) -> None:
    """Put a SQLite store in write-ahead-log mode (persistent, once per file): readers no longer block the writer,
    so parallel trials wait far less on "database is locked". Best effort: the retries above still apply."""
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=1.0)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        log.debug("could not switch %s to WAL mode: %s", path, exc)
