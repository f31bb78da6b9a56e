"""MATH500 for testing (hub or local), with MATH's training split for users who want to train on it.

MATH500 (Lightman et al. 2023) is 500 problems of the MATH test set (Hendrycks et al. 2021, MIT licence).

Test: the hub (``HuggingFaceH4/MATH-500``, split test: ``problem``, ``solution``, ``answer``) or a local JSON-lines
file with at least ``problem`` and ``answer`` (or a ``solution`` ending in ``\\boxed{...}``). Training: the MATH
training split from the hub (``EleutherAI/hendrycks_math``, its seven subject configs streamed one after another) or
a local JSON-lines file with ``problem`` and ``solution``. MATH500 is drawn from MATH's *test* split, so the two never
overlap. Gold answers are the content of a solution's last ``\\boxed{...}``; the ``math`` scorer compares them
symbolically. To train on OpenMathInstruct-2 and test on MATH500 (the paper's 1M-MATH), use ``openmathinstruct2``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from mtp_bench.data.files import read_jsonl
from mtp_bench.data.hub import check_local_files, count_local, local_hint, stream_rows
from mtp_bench.errors import DataError

MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")
PROMPT_TEMPLATE = "Question: {problem}\n\nAnswer:"  # the MuToR paper's format, as for GSM8K
ANSWER_TEMPLATE = " {solution}"


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in the text, braces balanced; None if none."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    depth, begin = 0, text.index("{", start)
    for position in range(begin, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[begin + 1 : position].strip()
    return None  # unbalanced: the box never closes


def _check_test_row(row: dict[str, Any]) -> None:
    if not isinstance(row.get("answer"), str) and last_boxed(str(row.get("solution", ""))) is None:
        raise ValueError("no gold answer: expected a string field answer or a solution with \\boxed{...}")


def _check_train_row(row: dict[str, Any]) -> None:
    if last_boxed(row["solution"]) is None:
        raise ValueError("the solution has no \\boxed{...} final answer")


def test_record(row: dict[str, Any]) -> dict[str, Any]:
    gold = row["answer"] if isinstance(row.get("answer"), str) else last_boxed(str(row["solution"]))
    solution = row.get("solution") if isinstance(row.get("solution"), str) else f"\\boxed{{{gold}}}"
    return {"problem": row["problem"].strip(), "solution": solution.strip(), "gold": str(gold).strip()}


class MATH500Params(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)

    source: Literal["local", "hub"] = "hub"
    """Where the test problems come from: ``hub`` streams ``hub_id``; ``local`` reads ``path``/``test_file``."""

    train_source: Literal["local", "hub"] | None = None
    """Where the MATH training problems come from; default: the same as ``source``."""

    test_file: str = "test.jsonl"
    """File of ``path`` with the test problems (``problem`` and ``answer`` or a boxed ``solution``)."""

    train_file: str = "train.jsonl"
    """File of ``path`` with training problems (``problem`` and a ``solution`` ending in ``\\boxed{...}``)."""

    path: str | None = None
    """Directory with the local files (needed when either source is ``local``)."""

    hub_id: str = "HuggingFaceH4/MATH-500"
    """Hub dataset of the test problems."""

    train_hub_id: str = "EleutherAI/hendrycks_math"
    """Hub dataset of the MATH training split (one config per subject)."""

    train_subjects: list[Literal[MATH_SUBJECTS]] = list(MATH_SUBJECTS)  # type: ignore[valid-type]
    """MATH subjects (hub configs) to train on; default: all seven."""

    @field_validator("path")
    @classmethod
    def _check_local(cls, path: str | None, info: ValidationInfo) -> str | None:
        source = info.data.get("source")
        train_source = info.data.get("train_source") or source
        files = [info.data.get("test_file", "")] if source == "local" else []
        files += [info.data.get("train_file", "")] if train_source == "local" else []
        return check_local_files(path, files) if files else path


class MATH500:
    """Competition mathematics; records carry ``problem``, ``solution`` (the training target) and ``gold``."""

    name: ClassVar[str] = "math500"
    Params: ClassVar[type] = MATH500Params
    prompt_template: ClassVar[str] = PROMPT_TEMPLATE
    answer_template: ClassVar[str] = ANSWER_TEMPLATE
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "bpe"

    def __init__(self, params: MATH500Params):
        self.params = params

    def preflight(self) -> int | None:
        """Read and check the local files as the trials will; hub parts are not reached before trials start."""
        p = self.params
        if p.source == "local":
            assert p.path is not None
            count_local(self._test(), Path(p.path) / p.test_file)
        if (p.train_source or p.source) != "local":
            return None
        assert p.path is not None
        return count_local(self._train(), Path(p.path) / p.train_file)

    def records(self, split: Literal["train", "test"]) -> list[dict[str, Any]]:
        return self._train() if split == "train" else self._test()

    def _test(self) -> list[dict[str, Any]]:
        p = self.params
        if p.source == "local":
            assert p.path is not None
            rows = read_jsonl(Path(p.path) / p.test_file, required=("problem",), check=_check_test_row)
        else:
            hint = local_hint(self.name, f"a directory with {p.test_file} (problem, answer per line)")
            rows = list(stream_rows(p.hub_id, None, "test", hint))
        return [test_record(row) for row in rows]

    def _train(self) -> list[dict[str, Any]]:
        p = self.params
        if (p.train_source or p.source) == "local":
            assert p.path is not None
            rows = read_jsonl(Path(p.path) / p.train_file, required=("problem", "solution"), check=_check_train_row)
        else:
            hint = local_hint(self.name, f"a directory with {p.train_file} (problem, solution per line)")
            rows = [row for subject in p.train_subjects for row in stream_rows(p.train_hub_id, subject, "train", hint)]
        records = []
        for index, row in enumerate(rows):
            gold = last_boxed(row["solution"])
            if gold is None:
                raise DataError(f"{p.train_hub_id} train row {index}: the solution has no \\boxed{{...}} answer")
            records.append({"problem": row["problem"].strip(), "solution": row["solution"].strip(), "gold": gold})
        return records
