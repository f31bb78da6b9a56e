"""What the shipped local lm-eval tasks (``lm_eval_tasks/*.yaml``) need beyond their YAML: the data each reads (its
folder's environment variable, its files' format check) and the ``process_docs`` that turns a dataset's original
rows into the documents of the lm-eval task it stands in for.

A shipped YAML names its data family in ``metadata.local_data`` (GSM8K when absent). lm-eval imports this module
through ``!function mtp_bench.evaluation.lm_eval_local.<name>``, so it imports neither torch nor lm-eval.

``agieval_aqua_rat_local`` is lm-eval's ``agieval_aqua_rat`` on AQuA-RAT's original files. lm-eval reads the hub set
``hails/agieval-aqua-rat``, whose rows (``query``, ``choices``, ``gold``) are AGIEval's zero-shot prompt of AQuA-RAT's
254 test problems: ``Q: <question> Answer Choices: (A)<option> (B)... \\nA: Among A through E, the answer is``, the
choices the options with their letter in brackets, ``gold`` the correct option's index in a list. :func:`aqua_rat_docs`
builds these fields from ``question``, ``options`` and ``correct``; lm-eval's own YAML settings and scoring function
do the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtp_bench.data.files import read_jsonl
from mtp_bench.tasks.aqua_rat import check_row as check_aqua_row
from mtp_bench.tasks.math500 import last_boxed

LETTERS = "ABCDEFG"  # AGIEval names up to seven options


@dataclass(frozen=True)
class LocalData:
    """A data family the shipped tasks read from a local folder."""

    env: str  # environment variable naming the folder
    describe: str  # what the folder must hold, for error messages
    check: Callable[[Path], object] | None = None  # reads one data file, raising DataError naming file:line


def _check_aqua(path: Path) -> object:
    return read_jsonl(path, required=("question", "correct"), check=check_aqua_row)


def _check_boxed(row: dict[str, Any]) -> None:
    if last_boxed(row["solution"]) is None:  # lm-eval's minerva process_docs reads the gold from the last box
        raise ValueError("the solution has no \\boxed{...} final answer (lm-eval's minerva_math reads it there)")


def _check_math500(path: Path) -> object:
    return read_jsonl(path, required=("problem", "solution"), check=_check_boxed)


LOCAL_DATA = {
    "gsm8k": LocalData("MTP_BENCH_GSM8K_DIR", "GSM8K's train.jsonl and test.jsonl (question, answer)"),
    "aqua_rat": LocalData("MTP_BENCH_AQUA_DIR", "AQuA-RAT's original JSON-lines files (question, options, rationale, "
                                                "correct)", _check_aqua),
    "math500": LocalData("MTP_BENCH_MATH500_DIR", "a MATH500-format test.jsonl (problem, solution with \\boxed{}, "
                                                  "answer), e.g. written by python -m mtp_bench.tasks.make_math_twin",
                         _check_math500),
}
"""Data family (a shipped YAML's ``metadata.local_data``) -> where its folder comes from and how its files are
checked before lm-eval reads them."""


def agieval_aqua_doc(row: dict[str, Any]) -> dict[str, Any]:
    """One AQuA-RAT row as a ``hails/agieval-aqua-rat`` document: AGIEval's zero-shot query, the bracketed options
    as choices and the correct option's index (a one-element list, as AGIEval's ``gold``)."""
    choices = [f"({option.lstrip()}" for option in row["options"]]  # "A)21" -> "(A)21"
    last = LETTERS[len(choices) - 1]
    query = f"Q: {row['question']} Answer Choices: {' '.join(choices)}\nA: Among A through {last}, the answer is"
    return {"query": query, "choices": choices, "gold": [LETTERS.index(row["correct"].strip())]}


def aqua_rat_docs(dataset: Any) -> Any:
    """``process_docs`` of ``agieval_aqua_rat_local``: a ``datasets.Dataset`` of AQuA-RAT rows -> one of AGIEval
    documents with only the hub set's fields (so the documents, hashes included, are the hub task's)."""
    return dataset.map(agieval_aqua_doc, remove_columns=dataset.column_names)


def lm_eval_fallback_dir(data_task: str, data_params: dict[str, Any]) -> str | None:
    """The trial's own GSM8K folder, for the shipped lm-eval tasks when no other folder is configured."""
    if data_task == "gsm8k" and data_params.get("source", "local") == "local":
        return data_params.get("path")
    return None
