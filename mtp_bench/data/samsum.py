"""SAMSum (Gliwa et al. 2019, CC BY-NC-ND 4.0): messenger-style dialogues with one human summary each.

Sources: the hub (``Samsung/samsum``, splits train / validation / test, streamed) or a local directory of JSON-lines
files with ``dialogue`` and ``summary`` (default names ``train.jsonl`` and ``test.jsonl``; the hub copy exports
to exactly this with ``datasets``' ``to_json``). Line ends are normalised (SAMSum mixes ``\\r\\n`` and ``\\n``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from mtp_bench.data import summaries
from mtp_bench.data.hub import check_split_files, preflight_local


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
        return check_split_files(cls, path, info.data)


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
        return preflight_local(self.params, self.records)

    def records(self, split: Literal["train", "test"]) -> list[dict[str, Any]]:
        # A few SAMSum dialogues are empty; they teach nothing and cannot be summarised, so they are left out.
        return summaries.read_records(self.params, split, self.name, ("summary",), ("dialogue", "summary"),
                                      "a directory with train.jsonl and test.jsonl", keep=_has_dialogue)


def _has_dialogue(row: dict[str, Any]) -> bool:
    return isinstance(row.get("dialogue"), str) and bool(row["dialogue"].strip())
