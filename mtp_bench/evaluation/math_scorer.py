"""Maths answers compared by meaning (math-verify: ``\\boxed{}``, LaTeX normalisation, symbolic equivalence).

Hugging Face's ``math-verify`` reads the completion's answer (the last ``\\boxed{...}`` first, else the last LaTeX or
plain expression), normalises the LaTeX (``\\dfrac12``, ``\\frac{1}{2}``, ``0.5``, ``1/2`` all read as one half;
units, ``\\text{}``, ``\\left``/``\\right`` dropped), and decides equivalence symbolically with sympy (sets,
intervals, matrices and equations included).

``exact_match`` is math-verify's verdict against the gold answer (the MuToR paper's MATH500 and OpenMathInstruct-2
rows); ``boxed_rate`` is the share of completions holding a ``\\boxed{...}`` at all, which tells a model that reasons
wrongly from one that never learned the answer format. The gold answer is parsed as if it were boxed, so plain ``18``
and LaTeX ``\\frac{\\pi}{2}`` are both read. math-verify's time limits use ``signal.alarm``, which works only in a
process's main thread (where trials run, under Ray and `--no-ray` alike); elsewhere (e.g. a thread of a caller's own)
they are switched off.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from mtp_bench.data.tasks import Example
from mtp_bench.evaluation.paper_scorer_params import MathParams
from mtp_bench.evaluation.scorer import EvalContext, ScoreResult, score_each


def _timeout(seconds: int) -> int | None:
    return seconds if threading.current_thread() is threading.main_thread() else None


def extract(completion: str) -> list[Any]:
    """math-verify's reading of a completion: ``[sympy object, source string]``, or ``[]`` when nothing parses."""
    from math_verify import parse  # imported here: sympy is slow to import and suite validation must stay fast

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
    """Symbolic answer equivalence with math-verify (``\\boxed{}`` first)."""

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
            "boxed": "\\boxed" in completion,
            "correct": correct,
            "scores": {"exact_match": correct},
        }
