"""DialogSum dialogue summarisation, with the test set's three references per dialogue (hub or local files).

DialogSum (Chen et al. 2021, CC BY-NC-SA 4.0) holds everyday dialogues with human summaries; ROUGE takes the best
of a test dialogue's references.

Sources: the hub (``knkarthick/dialogsum``, splits train / validation / test, streamed; its test split repeats each
dialogue once per reference and the rows are merged back) or a local directory with the original JSON-lines files
(``dialogsum.train.jsonl``, ``dialogsum.dev.jsonl``, ``dialogsum.test.jsonl``: ``dialogue`` and ``summary``, or
``summary1..3`` in test). ``train_file`` and ``test_file`` pick which file plays which split; the shared copy
(``../shared/data/dialogsum``) has no training file, so CPU suites train on ``train_file: dialogsum.dev.jsonl``.
Read that copy where it is: its licence does not let it be copied into this repository. ``validation: own`` makes
the 500-dialogue dev split the validation set instead of a split carved from training; ``prompt: official`` uses
the MuToR code's prompt.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from mtp_bench.data.hub import OwnValidationChoice, Split, preflight_local, split_file_field, split_files_validator
from mtp_bench.tasks import summaries

REFERENCE_FIELDS = ("summary", "summary1", "summary2", "summary3")


class DialogSumParams(OwnValidationChoice):
    source: Literal["local", "hub"] = "local"
    """``local`` reads ``path``; ``hub`` streams ``hub_id`` with the datasets library (needs network or its cache)."""

    train_file: str = split_file_field("dialogsum.train.jsonl", "training",
                                       "; the shared copy has none: CPU suites set ``dialogsum.dev.jsonl``")
    test_file: str = split_file_field("dialogsum.test.jsonl", "test", "; three references per dialogue in the original")
    validation_file: str = split_file_field("dialogsum.dev.jsonl", "validation", "; the dataset's own: 500 dialogues")

    path: str | None = None
    """Directory with the JSON-lines files (``source: local``); suites use
    ``${MTP_BENCH_DIALOGSUM_DIR:-../shared/data/dialogsum}``."""

    hub_id: str = "knkarthick/dialogsum"
    """Dataset id on the hub (``source: hub``)."""

    prompt: Literal["ours", "official"] = Field("ours", description=summaries.PROMPT_DOC)

    _check_local = split_files_validator(dev_file="dialogsum.dev.jsonl")


class DialogSum:
    """Dialogue summarisation; records carry ``dialogue``, ``summary`` (the first reference, the training target)
    and ``references`` (all of them, for ROUGE)."""

    name: ClassVar[str] = "dialogsum"
    Params: ClassVar[type] = DialogSumParams
    prompt_template: ClassVar[str] = summaries.PROMPT_TEMPLATE
    answer_template: ClassVar[str] = summaries.ANSWER_TEMPLATE
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "bpe"

    def __init__(self, params: DialogSumParams):
        self.params = params
        self.prompt_template = summaries.PROMPTS[params.prompt]  # this instance's choice over the class default

    def preflight(self) -> int | None:
        return preflight_local(self.params, self.records)

    def records(self, split: Split) -> list[dict[str, Any]]:
        records = summaries.read_records(self.params, split, self.name, REFERENCE_FIELDS, ("dialogue",),
                                         "a directory with dialogsum.train.jsonl and dialogsum.test.jsonl")
        return records if split == "train" else summaries.merge_repeated_dialogues(records)

    def validation_records(self) -> list[dict[str, Any]] | None:
        """The dataset's own validation split under ``validation: own``, else None (validation is carved)."""
        return self.records("validation") if self.params.validation == "own" else None
