"""OpenMathInstruct-2, streamed and filtered by problem source (the paper's 1M-GSM, 2M-GSM and 1M-MATH data).

OpenMathInstruct-2 (Toshniwal et al. 2024, CC BY 4.0) holds 14M synthetic solutions to GSM8K- and MATH-style
problems.

The hub copy (``nvidia/OpenMathInstruct-2``) is streamed, never loaded whole: rows of the chosen ``split``
(``train_1M``, ``train_2M``, ``train_5M`` or the full ``train``) are kept when their ``problem_source`` is one of
``problem_sources`` (1M-GSM: ``gsm8k`` + ``augmented_gsm8k``; 1M-MATH: ``math`` + ``augmented_math``). With
``max_examples`` alone the first N kept rows are used and the stream stops there; with ``subsample_seed`` too, a
uniform sample of N of all kept rows (reservoir sampling over the whole stream, seeded, returned in stream order), so
the same seed gives the same subset. ``sample_size`` draws the MuToR code's sample instead (1M-MATH: its 200,000 rows
of the ~850K MATH-style rows, see :func:`shuffled_head`), and ``extra`` adds rows of a larger split that the chosen
rows lack (Table 3's NTP on 1M-GSM plus further 2M-GSM rows). A local copy is a JSON-lines file
``<path>/<split>.jsonl`` with the hub's fields (``problem``, ``generated_solution``, ``expected_answer``,
``problem_source``); the same filter applies.

Targets end in ``\\boxed{...}``: the generated solutions do, and one that does not gets ``\\boxed{expected_answer}``
appended, so a trained model always writes its answer where the ``math`` scorer reads it. The test split is another
task's: ``test: gsm8k`` (1M-GSM, 2M-GSM) or ``test: math500`` (1M-MATH), configured by ``test_params``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from mtp_bench import registry
from mtp_bench.data.files import read_jsonl
from mtp_bench.data.hub import check_local_files, count_local, local_hint, stream_rows
from mtp_bench.errors import DataError
from mtp_bench.tasks.gsm8k import GSM8KParams
from mtp_bench.tasks.math500 import ANSWER_TEMPLATE, PROMPT_TEMPLATE, MATH500Params, last_boxed

ProblemSource = Literal["gsm8k", "augmented_gsm8k", "math", "augmented_math"]
TEST_TASKS: dict[str, type] = {"gsm8k": GSM8KParams, "math500": MATH500Params}  # test task -> its settings
FIELDS = ("problem", "generated_solution", "expected_answer", "problem_source")


def boxed_solution(solution: str, expected: str) -> str:
    """The solution, with ``\\boxed{expected}`` appended when it has no box of its own."""
    solution = solution.strip()
    return solution if last_boxed(solution) is not None else f"{solution}\nThe final answer is \\boxed{{{expected}}}."


def shuffled_head(rows: list[Any], size: int, seed: int) -> list[Any]:
    """The first ``size`` rows after a seeded shuffle, in shuffled order: NumPy's ``default_rng(seed).permutation``,
    which is what ``datasets.Dataset.shuffle(seed=seed).select(range(size))`` draws. The MuToR code samples 1M-MATH
    this way (seed 0, 200,000 rows), so the same rows in the same order give the same sample."""
    import numpy as np  # imported here: only sampling needs it

    order = np.random.default_rng(seed).permutation(len(rows))[:size]
    return [rows[int(i)] for i in order]


def row_key(row: dict[str, Any]) -> tuple[str, str]:
    """What makes two rows of different splits the same row: the problem and its generated solution."""
    return row["problem"], row["generated_solution"]


def reservoir(rows: Iterator[dict[str, Any]], size: int, seed: int) -> list[dict[str, Any]]:
    """A uniform sample of ``size`` rows of the stream (all of them if fewer), in stream order; same seed, same
    sample."""
    rng = random.Random(seed)
    kept: list[tuple[int, dict[str, Any]]] = []
    for index, row in enumerate(rows):
        if len(kept) < size:
            kept.append((index, row))
        else:
            slot = rng.randint(0, index)
            if slot < size:
                kept[slot] = (index, row)
    return [row for _, row in sorted(kept, key=lambda pair: pair[0])]


class ExtraRows(BaseModel):
    """Rows of a larger split added to the chosen ones (the paper's Table 3: NTP on 1M-GSM "plus additional samples"
    of 2M-GSM, ~1.4x the samples)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    split: Literal["train_1M", "train_2M", "train_5M", "train"]
    """Split the extra rows come from, filtered by the same ``problem_sources``; rows the chosen split also holds
    (same problem and solution) are never added."""

    size: int | float = Field(gt=0)
    """How many: a count, or a fraction of the chosen rows if below 1 (0.4: 1.4x the samples in all)."""

    seed: int = 0
    """The extra rows are the first ``size`` of the candidates after a seeded shuffle (as ``sample_size``)."""


class OpenMathInstruct2Params(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)

    source: Literal["local", "hub"] = "hub"
    """``hub`` streams ``hub_id``; ``local`` reads ``<path>/<split>.jsonl``."""

    split: Literal["train_1M", "train_2M", "train_5M", "train"] = "train_1M"
    """Which released training split (the paper: ``train_1M`` for 1M-GSM / 1M-MATH, ``train_2M`` for 2M-GSM)."""

    problem_sources: list[ProblemSource] = Field(min_length=1)
    """Rows kept, by ``problem_source``: e.g. ``[gsm8k, augmented_gsm8k]`` (1M-GSM, ≈152K rows of train_1M) or
    ``[math, augmented_math]`` (≈850K rows of train_1M, of which the paper's 1M-MATH samples 200K: ``sample_size``)."""

    max_examples: int | None = Field(default=None, ge=1)
    """Cap on training rows; default all kept rows (held in memory: ≈152K-277K for the paper's sets)."""

    subsample_seed: int | None = None
    """With ``max_examples``: draw a seeded uniform sample of the kept rows instead of taking the first ones."""

    sample_size: int | None = Field(default=None, ge=1)
    """Keep this many of the kept rows, drawn as the MuToR code draws 1M-MATH (200,000 of ~850K MATH-style rows of
    train_1M): shuffle with ``sample_seed`` exactly as ``datasets.Dataset.shuffle(seed=...)`` does, take the first
    N. Every kept row is held in memory while reading (~850K rows, a few GB, for 1M-MATH). Default: every kept row.
    Not with ``max_examples``."""

    sample_seed: int = 0
    """Seed of that shuffle (the MuToR code: 0)."""

    extra: ExtraRows | None = None
    """Rows of a larger split added to the chosen ones (see its fields); default none."""

    path: str | None = None
    """Directory holding ``<split>.jsonl`` (and ``extra.split``'s file) for ``source: local``."""

    hub_id: str = "nvidia/OpenMathInstruct-2"
    """Dataset id on the hub (``source: hub``)."""

    test: Literal["gsm8k", "math500"] = "math500"
    """Task whose test split is used: ``gsm8k`` (1M-GSM, 2M-GSM) or ``math500`` (1M-MATH)."""

    test_params: dict[str, Any] = Field(default_factory=lambda: {"source": "hub"})
    """Settings of the test task (its own ``params``), e.g. ``{source: local, path: ../shared/data/gsm8k}``."""

    @field_validator("path")
    @classmethod
    def _check_local(cls, path: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("source") != "local":
            return path
        extra = info.data.get("extra")
        splits = [info.data.get("split", "train_1M"), *([extra.split] if extra is not None else [])]
        return check_local_files(path, [f"{split}.jsonl" for split in splits])

    @field_validator("sample_size")
    @classmethod
    def _one_cap(cls, size: int | None, info: ValidationInfo) -> int | None:
        if size is not None and info.data.get("max_examples") is not None:
            raise ValueError("set at most one of max_examples and sample_size")
        return size

    @field_validator("extra")
    @classmethod
    def _another_split(cls, extra: ExtraRows | None, info: ValidationInfo) -> ExtraRows | None:
        if extra is not None and extra.split == info.data.get("split", "train_1M"):
            raise ValueError(f"extra.split {extra.split!r} is the chosen split itself: it has no rows to add")
        return extra

    @field_validator("test_params")
    @classmethod
    def _check_test_params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        test = info.data.get("test", "math500")
        params_model = TEST_TASKS[test]
        if test == "math500":  # only its test split is read here, so a local test file must not demand MATH training
            params = {"train_source": "hub", **params}
        try:
            return params_model.model_validate(params).model_dump(mode="json")
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(problems) from None


class OpenMathInstruct2:
    """Synthetic maths solutions filtered by problem source; records carry ``problem``, ``solution`` (ending in a
    box), ``gold`` and, for training rows, ``problem_source``."""

    name: ClassVar[str] = "openmathinstruct2"
    Params: ClassVar[type] = OpenMathInstruct2Params
    prompt_template: ClassVar[str] = PROMPT_TEMPLATE
    answer_template: ClassVar[str] = ANSWER_TEMPLATE
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "bpe"

    def __init__(self, params: OpenMathInstruct2Params):
        self.params = params

    def preflight(self) -> int | None:
        """The test task's own checks, then the local training file read and filtered as the trials will; the hub is
        not reached before trials start."""
        p = self.params
        registry.build(registry.TASKS, p.test, p.test_params).preflight()
        if p.source != "local":
            return None
        assert p.path is not None
        where = f"{Path(p.path) / f'{p.split}.jsonl'} (problem_source in {', '.join(p.problem_sources)})"
        return count_local(self._train(), where)

    def records(self, split: Literal["train", "test"]) -> list[dict[str, Any]]:
        return self._train() if split == "train" else self._test()

    def _rows(self, split: str) -> Iterator[dict[str, Any]]:
        p = self.params
        if p.source == "local":
            assert p.path is not None
            return iter(read_jsonl(Path(p.path) / f"{split}.jsonl", required=FIELDS))
        hint = local_hint(self.name, f"a directory with {split}.jsonl (the hub's fields, one row per line)")
        return stream_rows(p.hub_id, None, split, hint)

    def _kept(self, split: str) -> Iterator[dict[str, Any]]:
        wanted = set(self.params.problem_sources)
        return (row for row in self._rows(split) if row.get("problem_source") in wanted)

    def _train(self) -> list[dict[str, Any]]:
        p = self.params
        kept = self._kept(p.split)
        if p.max_examples is not None and p.subsample_seed is not None:
            rows = reservoir(kept, p.max_examples, p.subsample_seed)
        elif p.sample_size is not None:
            rows = shuffled_head(list(kept), p.sample_size, p.sample_seed)
        else:
            rows = []
            for row in kept:  # stop reading the stream as soon as the cap is reached
                rows.append(row)
                if p.max_examples is not None and len(rows) >= p.max_examples:
                    break
        if p.extra is not None:
            rows += self._extra(rows, p.extra)
        return [
            {
                "problem": row["problem"].strip(),
                "solution": boxed_solution(row["generated_solution"], str(row["expected_answer"]).strip()),
                "gold": str(row["expected_answer"]).strip(),
                "problem_source": row["problem_source"],
            }
            for row in rows
        ]

    def _extra(self, chosen: list[dict[str, Any]], extra: ExtraRows) -> list[dict[str, Any]]:
        """``extra.size`` rows of ``extra.split`` (same problem sources) that ``chosen`` does not hold."""
        have = {row_key(row) for row in chosen}
        candidates = [row for row in self._kept(extra.split) if row_key(row) not in have]
        size = int(extra.size) if extra.size >= 1 else round(extra.size * len(chosen))
        if size > len(candidates):
            raise DataError(f"{self.name}: extra asks for {size} rows of {extra.split} beyond the {len(chosen)} "
                            f"chosen, but it has only {len(candidates)} others (problem_source in "
                            f"{', '.join(self.params.problem_sources)})")
        return shuffled_head(candidates, size, extra.seed)

    def _test(self) -> list[dict[str, Any]]:
        rows = registry.build(registry.TASKS, self.params.test, self.params.test_params).records("test")
        if self.params.test == "gsm8k":  # GSM8K's fields under the names this task's templates use
            return [{"problem": r["question"], "solution": r["answer"], "gold": r["gold"]} for r in rows]
        return rows
