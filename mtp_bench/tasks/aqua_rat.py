"""AQuA-RAT: question + options -> rationale -> ``#### letter`` (hub or the original local files).

AQuA-RAT (Ling et al. 2017, Apache-2.0) holds algebra word problems with five options, a rationale and the correct
letter. The model reads the question and the options and writes the rationale, then ``#### X`` (the letter), the
same final-answer mark as GSM8K, which the ``multiple_choice`` scorer reads.

Sources: the hub (``deepmind/aqua_rat``, config ``raw``, splits train / validation / test, streamed) or a local
directory in the original format (one JSON object per line, in files named ``*.json``). The original release names
its files ``train.json``, ``dev.json`` and ``test.json``; ``train_file`` and ``test_file`` pick which file plays
which split. The shared development copy (``../shared/data/aqua``) has only ``dev.json`` and ``test.json`` (the 97K
training split is on the hub only), so CPU suites train on ``train_file: dev.json``. ``validation: own`` makes
AQuA's own 254-problem validation split (hub ``validation``, local ``dev.json``) the validation set instead of a
split carved from training.
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar, Literal

from mtp_bench.data.files import read_jsonl
from mtp_bench.data.hub import (
    OwnValidationChoice,
    Split,
    hub_split,
    local_hint,
    preflight_local,
    split_file,
    split_file_field,
    split_files_validator,
    stream_rows,
)

log = logging.getLogger(__name__)

LETTERS = "ABCDE"
_OPTION = re.compile(r"\s*([A-E])\s*\)")


def check_row(row: dict[str, Any]) -> None:
    """Reject a row whose options are not five ``X)...`` strings or whose answer is not one of their letters."""
    options = row.get("options")
    if not isinstance(options, list) or not all(isinstance(option, str) for option in options):
        raise ValueError("field options must be a list of strings like 'A)12'")
    letters = [m.group(1) if (m := _OPTION.match(option)) else None for option in options]
    if None in letters:
        raise ValueError(f"an option does not start with a letter and ')': {options}")
    if row["correct"].strip() not in letters:
        raise ValueError(f"correct answer {row['correct']!r} is not one of the options' letters {letters}")


def options_text(options: list[str]) -> str:
    """``["A)12", "B) 15"]`` -> ``"A) 12 B) 15"`` (one space after each letter, as the prompt shows them)."""
    parts = []
    for option in options:
        match = _OPTION.match(option)
        parts.append(f"{match.group(1)}) {option[match.end():].strip()}" if match else option.strip())
    return " ".join(parts)


def to_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "question": row["question"].strip(),
        "options": options_text(row["options"]),
        "rationale": row["rationale"].strip(),
        "gold": row["correct"].strip(),
    }


class AquaRatParams(OwnValidationChoice):
    source: Literal["local", "hub"] = "local"
    """``local`` reads ``path``; ``hub`` streams ``hub_id`` with the datasets library (needs network or its cache)."""

    train_file: str = split_file_field("train.json", "training",
                                       "; the shared copy has no ``train.json``: CPU suites set ``dev.json``")
    test_file: str = split_file_field("test.json", "test")
    validation_file: str = split_file_field("dev.json", "validation", "; the dataset's own: 254 problems")

    path: str | None = None
    """Directory with the JSON-lines files (``source: local``); suites use
    ``${MTP_BENCH_AQUA_DIR:-../shared/data/aqua}``."""

    hub_id: str = "deepmind/aqua_rat"
    """Dataset id on the hub (``source: hub``)."""

    hub_config: str = "raw"
    """Dataset configuration on the hub (``raw``: untokenised text)."""

    _check_local = split_files_validator(dev_file="dev.json")


class AquaRat:
    """Multiple-choice algebra with rationales; records carry ``question``, ``options`` (one line of text),
    ``rationale`` and ``gold`` (the correct letter)."""

    name: ClassVar[str] = "aqua_rat"
    Params: ClassVar[type] = AquaRatParams
    prompt_template: ClassVar[str] = "Question: {question}\nOptions: {options}\n\nAnswer:"
    answer_template: ClassVar[str] = " {rationale}\n#### {gold}"
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "bpe"

    def __init__(self, params: AquaRatParams):
        self.params = params

    def preflight(self) -> int | None:
        return preflight_local(self.params, self.records)

    def validation_records(self) -> list[dict[str, Any]] | None:
        """The dataset's own validation split under ``validation: own``, else None (validation is carved)."""
        return self.records("validation") if self.params.validation == "own" else None

    def records(self, split: Split) -> list[dict[str, Any]]:
        p = self.params
        if p.source == "local":
            rows = read_jsonl(split_file(p, split), required=("question", "rationale", "correct"), check=check_row)
        else:
            chosen = hub_split(p, split)
            hint = local_hint(self.name, "a directory with train.json and test.json (AQuA-RAT's original files)")
            rows, skipped = [], []
            for index, row in enumerate(stream_rows(p.hub_id, p.hub_config, chosen, hint)):
                try:
                    check_row(row)
                except ValueError as exc:
                    skipped.append(f"row {index}: {exc}")
                    continue
                rows.append(row)
            if skipped:  # a few malformed rows in a 97K crowd-sourced split should not stop a run, but are reported
                log.warning("%s %s: skipped %d malformed row(s), first: %s", p.hub_id, chosen, len(skipped),
                            skipped[0])
        return [to_record(row) for row in rows]
