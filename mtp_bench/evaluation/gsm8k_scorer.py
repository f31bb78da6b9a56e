"""GSM8K exact match under the MuToR paper's protocol: zero-shot ``Question: {q}\\n\\nAnswer:``, greedy decoding up to
512 new tokens, the answer read after ``#### `` and compared with the gold number after normalisation.

``exact_match`` (strict) reads the number after the first ``####`` of the completion; ``exact_match_flexible`` takes
the last number anywhere in the completion (lm-eval's "flexible-extract" idea).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from mtp_bench.data.tasks import Example
from mtp_bench.evaluation.api import EvalContext, ScoreResult

_NUMBER = re.compile(r"-?[$]?\s*\d[\d,]*(?:\.\d+)?|-?[$]?\s*\.\d+")


def normalize_number(text: str) -> str | None:
    """Canonical form of a numeric answer: ``$1,000`` -> ``1000``, ``-3.50`` -> ``-3.5``, ``18.`` -> ``18``.

    Returns None when the text holds no number.
    """
    cleaned = text.strip().replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    if not cleaned:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(value.to_integral_value())
    return format(value.normalize(), "f")


def strict_answer(completion: str) -> str | None:
    """The number after the first ``####`` (the model's answer line), normalised."""
    if "####" not in completion:
        return None
    line = completion.split("####", 1)[1].strip().splitlines()
    if not line:
        return None
    match = _NUMBER.search(line[0])
    return normalize_number(match.group(0)) if match else None


def flexible_answer(completion: str) -> str | None:
    """The last number anywhere in the completion, normalised."""
    matches = _NUMBER.findall(completion)
    return normalize_number(matches[-1]) if matches else None


class GSM8KScorerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_new_tokens: int | None = None
    """Decoding budget; default: ``evaluation.max_new_tokens`` (512 in the paper)."""


class GSM8KExactMatch:
    name: ClassVar[str] = "gsm8k"
    Params: ClassVar[type] = GSM8KScorerParams
    main_metric: ClassVar[str] = "exact_match"

    def __init__(self, params: GSM8KScorerParams):
        self.params = params

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult:
        completions = context.generate(examples, self.params.max_new_tokens)
        samples, strict_hits, flexible_hits = [], 0, 0
        for index, (example, completion) in enumerate(zip(examples, completions)):
            gold = normalize_number(str(example.record["gold"]))
            strict, flexible = strict_answer(completion), flexible_answer(completion)
            strict_hits += strict is not None and strict == gold
            flexible_hits += flexible is not None and flexible == gold
            samples.append(
                {
                    "index": index,
                    "question": example.record.get("question", example.prompt),
                    "completion": completion,
                    "gold": gold,
                    "prediction": strict,
                    "correct": strict is not None and strict == gold,
                    "prediction_flexible": flexible,
                    "correct_flexible": flexible is not None and flexible == gold,
                }
            )
        n = max(len(examples), 1)
        return ScoreResult(
            metrics={"exact_match": strict_hits / n, "exact_match_flexible": flexible_hits / n}, samples=samples
        )


class ExactMatchParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_new_tokens: int | None = None
    """Decoding budget; default: ``evaluation.max_new_tokens``."""


class AnswerExactMatch:
    """The completion equals the reference answer (both whitespace-normalised): for synthetic tasks whose answer
    is a fixed string (a path, a sum)."""

    name: ClassVar[str] = "exact_match"
    Params: ClassVar[type] = ExactMatchParams
    main_metric: ClassVar[str] = "exact_match"

    def __init__(self, params: ExactMatchParams):
        self.params = params

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult:
        completions = context.generate(examples, self.params.max_new_tokens)
        samples, hits = [], 0
        for index, (example, completion) in enumerate(zip(examples, completions)):
            gold, prediction = " ".join(example.answer.split()), " ".join(completion.split())
            correct = prediction == gold
            hits += correct
            samples.append({"index": index, "prompt": example.prompt, "gold": gold, "prediction": prediction,
                            "correct": correct})
        return ScoreResult(metrics={"exact_match": hits / max(len(examples), 1)}, samples=samples)
