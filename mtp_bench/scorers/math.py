"""Maths answers compared by meaning (math-verify: ``\\boxed{}``, LaTeX normalisation, symbolic equivalence).

The completion's answer is the content of its **last** ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced, as
in MATH500 practice and the MuToR paper's official grader; a completion whose last box never closes (cut off) has no
answer; one with no box at all is read by math-verify's own extraction (the last LaTeX or plain expression, so a plain
``#### 18`` still reads). Reading the box ourselves matters: math-verify 0.9 gathers *every* box of a completion into
one set, so ``\\boxed{5}, correction: \\boxed{\\frac{14}{3}}`` would not equal ``\\frac{14}{3}``. Hugging Face's
``math-verify`` then parses that answer (re-boxed), normalises the LaTeX (``\\dfrac12``, ``\\frac{1}{2}``, ``0.5``,
``1/2`` all read as one half; units, ``\\text{}``, ``\\left``/``\\right`` dropped), and decides equivalence
symbolically with sympy (sets, intervals, matrices and equations included).

``exact_match`` is math-verify's verdict against the gold answer (the MuToR paper's MATH500 and OpenMathInstruct-2
rows); ``boxed_rate`` is the share of completions holding a ``\\boxed{...}`` at all, which tells a model that reasons
wrongly from one that never learned the answer format (``\\fbox`` counts too). The gold answer is parsed as if it were
boxed, so plain ``18`` and LaTeX ``\\frac{\\pi}{2}`` are both read. math-verify's time limits use ``signal.alarm``,
which works only in a process's main thread (where trials run, under Ray and `--no-ray` alike); elsewhere (e.g. a
thread of a caller's own) they are switched off.
"""

from __future__ import annotations

import re
import threading
from typing import Any, ClassVar

from mtp_bench.api.scorer import EvalContext, ScoreResult, score_each
from mtp_bench.api.task import Example
from mtp_bench.scorers.math_params import MathParams
from mtp_bench.tasks.math500 import last_boxed


def _timeout(seconds: int) -> int | None:
    return seconds if threading.current_thread() is threading.main_thread() else None


_BOX = re.compile(r"\\(?:boxed|fbox)\{")


def extract(completion: str) -> list[Any]:
    """The completion's answer as math-verify reads it: ``[sympy object, source string]``, ``[]`` when nothing
    parses. The last closed box when there is one; nothing when the last box never closes; else the whole text."""
    from math_verify import parse  # imported here: sympy is slow to import and suite validation must stay fast

    boxed = last_boxed(completion)
    if boxed is not None:
        return parse(f"\\boxed{{{boxed}}}", parsing_timeout=_timeout(5))
    if _BOX.search(completion):  # a box that never closes: the answer was cut off
        return []
    return parse(completion, parsing_timeout=_timeout(5))


def gold_answer(gold: str) -> list[Any]:
    from math_verify import parse

    return parse(f"\\boxed{{{gold}}}", parsing_timeout=_timeout(5))


def matches(gold: str, predicted: list[Any]) -> bool:
    """Whether an extracted answer equals the gold answer under math-verify (nothing extracted is wrong)."""
    from math_verify import verify

    target = gold_answer(gold)
    if not target or not predicted:
        return False
    return bool(verify(target, predicted, timeout_seconds=_timeout(5)))


def equivalent(gold: str, completion: str) -> bool:
    """Whether the completion's answer equals the gold answer under math-verify."""
    return matches(gold, extract(completion))


class MathAnswer:
    """Symbolic answer equivalence with math-verify on the last ``\\boxed{}``."""

    name: ClassVar[str] = "math"
    Params: ClassVar[type] = MathParams
    main_metric: ClassVar[str] = "exact_match"

    def __init__(self, params: MathParams):
        self.params = params

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult:
        result = score_each(context, examples, self.params.max_new_tokens, self.judge, ("exact_match",))
        # boxed_rate describes the answer format, not correctness, so it is a metric but no per-sample score
        result.metrics["boxed_rate"] = sum(row["boxed"] for row in result.samples) / max(len(result.samples), 1)
        return result

    @staticmethod
    def judge(index: int, example: Example, completion: str) -> dict[str, Any]:
        gold = str(example.record["gold"])
        predicted = extract(completion)
        correct = matches(gold, predicted)
        return {
            "index": index,
            "problem": example.record.get("problem", example.prompt),
            "completion": completion,
            "gold": gold,
            "prediction": predicted[-1] if predicted else None,
            "boxed": "\\boxed" in completion or "\\fbox" in completion,
            "correct": correct,
            "scores": {"exact_match": correct},
        }
