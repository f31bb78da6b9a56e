"""Plain text for pretraining from scratch (``train.mode: pretrain``): every token is a target.

Documents come from local files (``.txt``: one document per non-empty line; ``.jsonl``: one object per line with a
text field) or a hub dataset. Without a test file, a fixed share of the documents is held out as the test split.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mtp_bench.data.files import read_jsonl, read_lines, shown_path
from mtp_bench.errors import DataError


class PlainTextParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)

    source: Literal["local", "hub"] = "local"
    """``local`` reads ``train_file`` (and ``test_file``); ``hub`` loads ``hub_id`` with the datasets library."""

    train_file: str | None = None
    """``.txt`` (one document per non-empty line) or ``.jsonl`` (one object per line, see ``text_field``)."""

    test_file: str | None = None
    """Held-out documents in the same format; default: ``test_fraction`` of the training documents."""

    test_fraction: float = Field(default=0.05, gt=0, lt=1)
    """Share of documents held out as the test split when there is no test file."""

    text_field: str = "text"
    """Field holding the document in ``.jsonl`` files and hub datasets."""

    hub_id: str | None = None
    """Dataset id on the hub (``source: hub``), e.g. ``roneneldan/TinyStories``."""

    hub_config: str | None = None
    """Dataset configuration on the hub."""

    @field_validator("train_file", "test_file")
    @classmethod
    def _exists(cls, path: str | None, info: ValidationInfo) -> str | None:
        if path is not None and info.data.get("source") == "local" and not Path(path).is_file():
            raise ValueError(f"file {shown_path(path)}" + (" is not a file" if Path(path).exists() else ""))
        if path is None and info.field_name == "train_file" and info.data.get("source") == "local":
            raise ValueError("source is local but no train_file is given")
        return path


class PlainText:
    """Documents of plain text; the prompt is empty and the whole document is the target."""

    name: ClassVar[str] = "text"
    Params: ClassVar[type] = PlainTextParams
    prompt_template: ClassVar[str] = ""
    answer_template: ClassVar[str] = "{text}"
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "bpe"

    def __init__(self, params: PlainTextParams):
        self.params = params

    def _read(self, path: Path) -> list[dict[str, Any]]:
        if path.suffix == ".jsonl":
            rows = read_jsonl(path, required=(self.params.text_field,))
            return [{"text": row[self.params.text_field]} for row in rows]
        # streamed and bounded like a JSONL file; a line holds one document (or several, split at \r, \f, ...)
        return [{"text": part.strip()} for _, line in read_lines(path) for part in line.splitlines() if part.strip()]

    def _hub(self, split: str) -> list[dict[str, Any]]:
        import datasets

        rows = datasets.load_dataset(self.params.hub_id, self.params.hub_config, split=split)
        return [{"text": row[self.params.text_field]} for row in rows]

    def preflight(self) -> int | None:
        """Read the local files as the trials will (every line decodes and parses; neither split is empty); the hub
        is not reached before trials start."""
        p = self.params
        if p.source != "local":
            return None
        train, test = self.records("train"), self.records("test")
        for rows, path in ((train, p.train_file), (test, p.test_file or p.train_file)):
            if not rows:
                raise DataError(f"{path}: no documents (the file is empty)")
        return len(train)

    def records(self, split: Literal["train", "test"]) -> list[dict[str, Any]]:
        p = self.params
        if p.source == "hub":
            return self._hub("train" if split == "train" else "validation")
        assert p.train_file is not None
        if p.test_file is not None:
            return self._read(Path(p.train_file if split == "train" else p.test_file))
        documents = self._read(Path(p.train_file))
        if len(documents) < 2:
            raise DataError(f"{p.train_file}: need at least two documents to hold some out")
        order = list(range(len(documents)))
        random.Random(0).shuffle(order)
        n_test = max(1, round(p.test_fraction * len(documents)))
        chosen = sorted(order[:n_test]) if split == "test" else sorted(order[n_test:])
        return [documents[i] for i in chosen]
