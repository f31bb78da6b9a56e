"""Reading local data files as tasks need them: streamed and bounded (:func:`read_lines`, :func:`read_jsonl`), with
errors that name ``file:line``, and paths shown as written and as resolved (:func:`shown_path`). Imports no torch."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mtp_bench.errors import DataError


def shown_path(text: str | Path) -> str:
    """A path as the user wrote it and, when that differs, as resolved; a path that does not exist says so and names
    its first missing part (``../x/etc/../../etc`` may resolve to an existing ``/etc``, but ``../x`` is missing)."""
    written = Path(text)
    try:
        resolved = written.resolve()
    except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError on a loop
        return f"{str(text)!r} is a loop of symbolic links (it never reaches a file or folder)"
    shown = repr(str(text)) if str(resolved) == str(text) else f"{str(text)!r} (resolved: {resolved})"
    if written.exists():
        return shown
    absolute = written if written.is_absolute() else Path.cwd() / written
    for depth in range(1, len(absolute.parts) + 1):
        prefix = Path(os.path.normpath(Path(*absolute.parts[:depth])))
        if not prefix.exists():
            missing = "" if prefix == absolute else f"; {prefix} is missing"
            return f"{shown} does not exist{missing}"
    return f"{shown} does not exist"


MAX_ROW_BYTES = 1_000_000
"""Longest line (one JSONL row, one plain-text document) a local data file may hold; ``$MTP_BENCH_MAX_ROW_BYTES``
changes it. One row is tokenized whole: a 100 MB row grows to tens of GB before truncation can help."""

MAX_DATA_FILE_BYTES = 8_000_000_000
"""Largest local data file read (it is held in memory as records); ``$MTP_BENCH_MAX_DATA_FILE_BYTES`` changes it.
Larger data belongs on the hub, streamed (``source: hub``)."""


def _cap(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a local data file, streamed: the file's size and each line's length are bounded
    (:data:`MAX_DATA_FILE_BYTES`, :data:`MAX_ROW_BYTES`), so that no row is read whole before it is refused; a line
    that is not UTF-8 is an error naming the file and line."""
    max_row = _cap("MTP_BENCH_MAX_ROW_BYTES", MAX_ROW_BYTES)
    max_file = _cap("MTP_BENCH_MAX_DATA_FILE_BYTES", MAX_DATA_FILE_BYTES)
    if not path.is_file():
        raise DataError(f"{shown_path(path)}: no such file")
    try:
        handle = path.open("rb")
        size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        if size > max_file:
            raise DataError(f"{path}: {_size(size)}; a local data file may hold at most {_size(max_file)} "
                            "(MTP_BENCH_MAX_DATA_FILE_BYTES): stream it from the hub (source: hub), or split it")
        number = 0
        while raw := handle.readline(max_row + 2):  # a line of max_row bytes and its \r\n still fits
            number += 1
            if len(raw.rstrip(b"\r\n")) > max_row:
                raise DataError(f"{path}:{number}: a line longer than {max_row:,} bytes, the cap on one row "
                                "(MTP_BENCH_MAX_ROW_BYTES); split the document")
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x})") from None


def read_jsonl(
    path: Path, required: tuple[str, ...], check: Callable[[dict[str, Any]], object] | None = None
) -> list[dict[str, Any]]:
    """Read a JSON-lines file (through :func:`read_lines`: bounded, streamed); an unreadable file, a line that is
    not UTF-8 or not JSON, a missing field or a row ``check`` rejects (by raising ValueError) is an error naming the
    file and line."""
    rows = []
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object")
        missing = [key for key in required if not isinstance(row.get(key), str)]
        if missing:
            raise DataError(f"{path}:{number}: missing or non-string field(s) {', '.join(missing)}")
        if check is not None:
            try:
                check(row)
            except ValueError as exc:
                raise DataError(f"{path}:{number}: {exc}") from None
        rows.append(row)
    return rows
