"""What the dialogue-summarisation tasks (DialogSum, SAMSum) share: the prompt, reading a split (local file or hub)
into records with a list of reference summaries, and the merging of hub rows that repeat one dialogue once per
reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from mtp_bench.data.files import read_jsonl
from mtp_bench.data.hub import Split, SplitFiles, hub_split, local_hint, split_file, stream_rows
from mtp_bench.errors import DataError

PROMPT_TEMPLATE = "Summarize the following dialogue.\n\n{dialogue}\n\nSummary:"
ANSWER_TEMPLATE = " {summary}"  # the first reference is the training target; scorers see them all
# The tasks' ``prompt`` choice: ours (an instruction line first), or the MuToR code's summarisation prompt (no
# instruction; its target is " " + summary + EOS, as ours).
PROMPTS = {"ours": PROMPT_TEMPLATE, "official": "Dialogue:\n{dialogue}\n\nSummary:"}
# The description of the tasks' ``prompt`` field, which picks one of PROMPTS.
PROMPT_DOC = """Prompt: ``ours`` (``Summarize the following dialogue.`` then the dialogue and ``Summary:``) or ``official``,
the MuToR code's (``Dialogue:`` on its own line, the dialogue, ``Summary:``). ``data.prompt_template`` overrides
either."""


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


class SummarySource(SplitFiles, Protocol):
    """The Params fields :func:`read_records` reads: the local file pair or the hub split, and the hub id."""

    hub_id: str


def read_records(params: SummarySource, split: Split, task: str, fields: tuple[str, ...],
                 required: tuple[str, ...], files_hint: str,
                 keep: Callable[[dict[str, Any]], bool] = lambda row: True) -> list[dict[str, Any]]:
    """The records of one split, in row order: the local file (each line needs ``required`` and one of the reference
    ``fields``) or the hub split, streamed (a failure ends with ``files_hint``, the local alternative). Rows that
    ``keep`` refuses are left out; a kept row without a reference is a DataError naming its source and row."""
    if params.source == "local":
        path = split_file(params, split)
        rows = read_jsonl(path, required=required, check=check_has_summary(fields))
        source = str(path)
    else:
        source = f"{params.hub_id} {split}"
        rows = list(stream_rows(params.hub_id, None, hub_split(params, split), local_hint(task, files_hint)))
    return [summary_record(row["dialogue"], references_of(row, fields), f"{source} row {index}")
            for index, row in enumerate(rows) if keep(row)]
