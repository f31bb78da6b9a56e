"""SAMSum (Gliwa et al. 2019, CC BY-NC-ND 4.0): messenger-style dialogues with one human summary each.

Sources: the hub (``Samsung/samsum``, splits train / validation / test, streamed) or a local directory of JSON-lines
files with ``dialogue`` and ``summary`` (default names ``train.jsonl`` and ``test.jsonl``; the hub copy exports
to exactly this with ``datasets``' ``to_json``). Line ends are normalised (SAMSum mixes ``\\r\\n`` and ``\\n``).
``validation: own`` makes SAMSum's 818-dialogue validation split (hub ``validation``, local ``validation.jsonl``)
the validation set instead of a split carved from training; ``prompt: official`` uses the MuToR code's prompt.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from mtp_bench.data.hub import OwnValidationChoice, Split, preflight_local, split_file_field, split_files_validator
from mtp_bench.tasks import summaries


class SAMSumParams(OwnValidationChoice):
    source: Literal["local", "hub"] = "hub"
    """``hub`` streams ``hub_id`` with the datasets library (needs network or its cache); ``local`` reads
    ``path``."""

    train_file: str = split_file_field("train.jsonl", "training")
    test_file: str = split_file_field("test.jsonl", "test")
    validation_file: str = split_file_field("validation.jsonl", "validation", "; the dataset's own: 818 dialogues")

    path: str | None = None
    """Directory with the JSON-lines files (``source: local``)."""

    hub_id: str = "Samsung/samsum"
    """Dataset id on the hub (``source: hub``)."""

    prompt: Literal["ours", "official"] = Field("ours", description=summaries.PROMPT_DOC)

    _check_local = split_files_validator()


class SAMSum:
    """Dialogue summarisation; records carry ``dialogue``, ``summary`` and ``references`` (the one summary)."""

    name: ClassVar[str] = "samsum"
    Params: ClassVar[type] = SAMSumParams
    prompt_template: ClassVar[str] = summaries.PROMPT_TEMPLATE
    answer_template: ClassVar[str] = summaries.ANSWER_TEMPLATE
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "bpe"

    def __init__(self, params: SAMSumParams):
        self.params = params
        self.prompt_template = summaries.PROMPTS[params.prompt]  # this instance's choice over the class default

    def preflight(self) -> int | None:
        return preflight_local(self.params, self.records)

    def validation_records(self) -> list[dict[str, Any]] | None:
        """The dataset's own validation split under ``validation: own``, else None (validation is carved)."""
        return self.records("validation") if self.params.validation == "own" else None

    def records(self, split: Split) -> list[dict[str, Any]]:
        # A few SAMSum dialogues are empty; they teach nothing and cannot be summarised, so they are left out.
        return summaries.read_records(self.params, split, self.name, ("summary",), ("dialogue", "summary"),
                                      "a directory with train.jsonl and test.jsonl", keep=_has_dialogue)


def _has_dialogue(row: dict[str, Any]) -> bool:
    return isinstance(row.get("dialogue"), str) and bool(row["dialogue"].strip())
