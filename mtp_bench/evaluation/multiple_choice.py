"""Multiple-choice letter accuracy (AQuA-RAT): the completion's chosen letter against the gold one.

How the letter is read (the rule, documented because it decides the numbers):
- ``accuracy`` (strict, the main metric): the letter right after the completion's first ``####`` — the format the
  ``aqua_rat`` task trains (``... rationale\\n#### C``). Spaces, a ``(`` and a following ``)`` or ``.`` are allowed
  (``#### (C).``); the letter must be one of the options' letters and stand alone (``#### Cats`` is no answer).
- ``accuracy_flexible``: the strict letter if there is one, else the **last** phrase in the completion like
  ``answer is C``, ``Answer: (C)``, ``Answer - C``, ``answer C``, ``option C`` or ``choice C`` (words in any case,
  the letter upper-case and alone) — how AQuA's own rationales end ("Correct answer - A", "Answer D").
A completion with no readable letter counts as wrong.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from mtp_bench.data.tasks import Example
from mtp_bench.evaluation.paper_scorer_params import MultipleChoiceParams
from mtp_bench.evaluation.scorer import EvalContext, ScoreResult, score_each, two_way_row

METRICS = ("accuracy", "accuracy_flexible")


def strict_letter(completion: str, letters: str = "ABCDE") -> str | None:
    """The letter after the first ``####``; None when there is no mark or no lone option letter after it."""
    if "####" not in completion:
        return None
    match = re.match(rf"\s*\(?([{letters}])(?![A-Za-z0-9])", completion.split("####", 1)[1])
    return match.group(1) if match else None


def flexible_letter(completion: str, letters: str = "ABCDE") -> str | None:
    """The strict letter, else the letter of the last ``answer is X`` / ``option X`` / ``choice X`` phrase."""
    strict = strict_letter(completion, letters)
    if strict is not None:
        return strict
    phrase = re.compile(rf"(?i:answer|option|choice)\s*(?:(?i:is)|[:=-])?\s*\(?([{letters}])(?![A-Za-z0-9])")
    found = phrase.findall(completion)
    return found[-1] if found else None


class MultipleChoice:
    """Letter accuracy on multiple-choice questions whose records carry the gold letter as ``gold``."""

    name: ClassVar[str] = "multiple_choice"
    Params: ClassVar[type] = MultipleChoiceParams
    main_metric: ClassVar[str] = "accuracy"

    def __init__(self, params: MultipleChoiceParams):
        self.params = params

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult:
        return score_each(context, examples, self.params.max_new_tokens, self.judge, METRICS)

    def judge(self, index: int, example: Example, completion: str) -> dict[str, Any]:
        letters = self.params.letters
        gold = str(example.record["gold"]).strip()
        read = (strict_letter(completion, letters), flexible_letter(completion, letters))
        return two_way_row(index, example, completion, gold, read, METRICS)
