"""What the commands that write the CPU twins' local data share (:mod:`.make_math_twin`, :mod:`.make_samsum_twin`):
the JSON-lines writer, the folder of the dataset a twin is made from, and how their closing line names it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One JSON object per line, non-ASCII text kept as it is (what the tasks' ``read_jsonl`` reads back)."""
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def source_folder(given: str | None, env: str, default: str) -> Path:
    """The folder of the dataset a twin is made from: the one given on the command line, else ``$env``, else
    ``default`` (the shared copy beside the repository)."""
    return Path(given or os.environ.get(env) or default)


def made_from(dataset: str, folder: Path | None, generated: str) -> str:
    """Where a twin's rows came from, for the command's closing line: the dataset's folder, or (no folder) what was
    generated instead."""
    return f"{dataset} at {folder}" if folder else generated
