"""SAMSum (Gliwa et al. 2019, CC BY-NC-ND 4.0): messenger-style dialogues with one human summary each.

Sources: the hub (``Samsung/samsum``, splits train / validation / test, streamed) or a local directory of JSON-lines
files with ``dialogue`` and ``summary`` (default names ``train.jsonl`` and ``test.jsonl``; the hub copy exports
to exactly this with ``datasets``' ``to_json``). Line ends are normalised (SAMSum mixes ``\\r\\n`` and ``\\n``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from mtp_bench.data import summaries
from mtp_bench.data.hub import check_local_files, count_local, local_hint, stream_rows
from mtp_bench.data.tasks import read_jsonl


class SAMSumParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)

    source: Literal["local", "hub"] = "hub"
    """``hub`` streams ``hub_id`` with the datasets library (needs network or its cache); ``local`` reads
    ``path``."""

    train_file: str = "train.jsonl"
    """File of ``path`` used as the training split (``source: local``)."""

    test_file: str = "test.jsonl"
    """File of ``path`` used as the test split (``source: local``)."""

    path: str | None = None
    """Directory with the JSON-lines files (``source: local``)."""

    hub_id: str = "Samsung/samsum"
    """Dataset id on the hub (``source: hub``)."""

    hub_train_split: Literal["train", "validation"] = "train"
    """Hub split used for training (validation is carved from it by ``data.validation_size``)."""

    @field_validator("path")
    @classmethod
    def _check_local(cls, path: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("source") != "local":
            return path
        return check_local_files(path, [info.data.get("train_file", ""), info.data.get("test_file", "")])


class SAMSum:
    """Dialogue summarisation; records carry ``dialogue``, ``summary`` and ``references`` (the one summary)."""

    name: ClassVar[str] = "samsum"
    Params: ClassVar[type] = SAMSumParams
    prompt_template: ClassVar[str] = summaries.PROMPT_TEMPLATE
    answer_template: ClassVar[str] = summaries.ANSWER_TEMPLATE
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "bpe"

    def __init__(self, params: SAMSumParams):
        self.params = params

    def preflight(self) -> int | None:
        """Read and check both local files as the trials will (file:line on the first bad row; neither empty); the
        hub is not reached before trials start."""
        p = self.params
        if p.source != "local":
            return None
        assert p.path is not None
        count_local(self.records("test"), Path(p.path) / p.test_file)
        return count_local(self.records("train"), Path(p.path) / p.train_file)

    def records(self, split: Literal["train", "test"]) -> list[dict[str, Any]]:
        p = self.params
        if p.source == "local":
            assert p.path is not None
            path = Path(p.path) / (p.train_file if split == "train" else p.test_file)
            rows = read_jsonl(path, required=("dialogue", "summary"), check=summaries.check_has_summary(("summary",)))
            source = str(path)
        else:
            source = f"{p.hub_id} {split}"
            hub_split = p.hub_train_split if split == "train" else "test"
            rows = list(stream_rows(p.hub_id, None, hub_split,
                                    local_hint(self.name, "a directory with train.jsonl and test.jsonl")))
        # A few SAMSum dialogues are empty; they teach nothing and cannot be summarised, so they are left out.
        return [
            summaries.summary_record(row["dialogue"], summaries.references_of(row, ("summary",)), f"{source} row {i}")
            for i, row in enumerate(rows)
            if isinstance(row.get("dialogue"), str) and row["dialogue"].strip()
        ]
