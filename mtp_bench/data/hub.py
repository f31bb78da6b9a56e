"""Reading hub datasets without holding them whole, and local data folders checked up front.

Every hub loader of the paper's text tasks goes through :func:`stream_rows`: the dataset is opened with
``streaming=True`` (rows arrive one at a time; a 5M-row split is never materialised), and a hub that cannot be
reached — no network, a wrong id, a gated set without a login — becomes one :class:`DataError` that says so and
names the local alternative. :func:`check_local_files` is the shared ``source: local`` check of the tasks' Params.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mtp_bench.data.tasks import DataError, shown_path


def stream_rows(hub_id: str, config: str | None, split: str, local_hint: str) -> Iterator[dict[str, Any]]:
    """Rows of a hub split, streamed. Any failure to open or read it is a DataError ending in ``local_hint``."""
    try:
        import datasets  # imported here: only the hub path needs it, and validation must stay fast
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise DataError(f"the datasets library is needed for hub data ({exc}); {local_hint}") from None
    where = f"{hub_id}" + (f" ({config})" if config else "") + f", split {split!r}"
    try:
        stream = datasets.load_dataset(hub_id, config, split=split, streaming=True)
        yield from stream
    except DataError:
        raise
    except Exception as exc:  # network, missing id, gated repo, bad split: all mean "not reachable from here"
        detail = " ".join(str(exc).split())[:300]
        raise DataError(f"hub dataset {where} could not be read ({type(exc).__name__}: {detail}); {local_hint}") \
            from None


def local_hint(task: str, path_hint: str) -> str:
    """The sentence every hub failure ends with: how to use a local copy instead."""
    return f"without network use a local copy: data.params.source: local with path: {path_hint} (see `{task}` docs)"


def check_local_files(path: str | None, files: list[str], advice: str = "") -> str:
    """``source: local`` checks: a directory is given, exists, and holds each file. Raises ValueError (pydantic turns
    it into a ``data.params.path: ...`` line)."""
    if not path:
        raise ValueError("source is local but no path is given")
    directory = Path(path)
    if not directory.exists():
        raise ValueError(f"data directory {shown_path(path)}")
    if not directory.is_dir():
        raise ValueError(f"data directory {shown_path(path)} is not a directory")
    missing = [name for name in files if not (directory / name).is_file()]
    if missing:
        raise ValueError(f"data directory {shown_path(path)} lacks {', '.join(missing)}{advice}")
    return path


def count_local(rows: list[dict[str, Any]], where: Path | str) -> int:
    """A task's ``preflight`` step: the rows of one local file were read and checked; none at all is an error."""
    if not rows:
        raise DataError(f"{where}: no examples (the file is empty, or no row passes the task's filter)")
    return len(rows)

