"""What the dialogue-summarisation tasks (DialogSum, SAMSum) share: the prompt, the record shape with a list of
reference summaries, and the merging of hub rows that repeat one dialogue once per reference."""

from __future__ import annotations

from typing import Any

from mtp_bench.data.tasks import DataError

PROMPT_TEMPLATE = "Summarize the following dialogue.\n\n{dialogue}\n\nSummary:"
ANSWER_TEMPLATE = " {summary}"  # the first reference is the training target; scorers see them all


def clean(text: str) -> str:
    """Windows line ends and stray spaces around the text removed (SAMSum mixes ``\\r\\n`` and ``\\n``)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def references_of(row: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    """The row's non-empty reference summaries, in field order (``summary`` or ``summary1..3``)."""
    return [clean(row[name]) for name in fields if isinstance(row.get(name), str) and row[name].strip()]


def summary_record(dialogue: str, references: list[str], source: str) -> dict[str, Any]:
    if not references:
        raise DataError(f"{source}: no reference summary")
    return {"dialogue": clean(dialogue), "summary": references[0], "references": references}


def merge_repeated_dialogues(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per distinct dialogue, in first-seen order, with every reference its rows carried. The hub copy of
    DialogSum's test set has one row per (dialogue, reference) pair; the original file has one row per dialogue."""
    merged: dict[str, dict[str, Any]] = {}
    for record in records:
        kept = merged.setdefault(record["dialogue"], {**record, "references": []})
        kept["references"] += [ref for ref in record["references"] if ref not in kept["references"]]
    return list(merged.values())


def check_has_summary(fields: tuple[str, ...]):
    """A ``read_jsonl`` row check: at least one of the reference fields holds text."""

    def check(row: dict[str, Any]) -> None:
        if not references_of(row, fields):
            raise ValueError(f"no reference summary (expected one of the fields {', '.join(fields)})")

    return check
