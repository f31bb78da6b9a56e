"""GSM8K exact match under the MuToR paper's protocol: zero-shot ``Question: {q}\\n\\nAnswer:``, greedy decoding up to
512 new tokens (batched, KV cache: :meth:`EvalContext.generate`), the answer read after ``####`` and compared with the
gold number after normalisation.

``exact_match`` (strict) takes the number written right after the first ``####`` of the completion (spaces and a
``$`` may come between); ``exact_match_flexible`` takes the last number anywhere in the completion (the idea of
lm-eval's "flexible-extract"). Both sides are normalised: ``$1,000`` -> ``1000``, ``-3.50`` -> ``-3.5``,
``18.`` -> ``18``.

Per-sample rows carry ``correct`` (strict) and ``scores`` (one boolean per metric), which ``mtp-bench compare``
pairs across methods for its significance test.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from mtp_bench.data.tasks import Example
from mtp_bench.evaluation.api import EvalContext, ScoreResult

# A number as people and models write it: an optional sign and "$" (either order, spaces allowed), then digits with
# proper thousands groups ("1,000,000", not "1,2,3", which is three numbers), an optional decimal part, or a bare
# decimal (".5"). A "." without digits after it ends the sentence ("18."). A hyphen right after a word character or
# ")" is a minus between two numbers or a range ("16-3", "3-4"), not a sign.
_SIGN = r"(?:(?<![\w)])[-\u2212]\s*)?"
_NUMBER = re.compile(
    _SIGN + r"(?:\$\s*(?:[-\u2212]\s*)?)?" + r"(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
)
_CANONICAL = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")


def normalize_number(text: str) -> str | None:
    """Canonical form of a numeric answer: ``$1,000`` -> ``1000``, ``-3.50`` -> ``-3.5``, ``18.`` -> ``18``,
    ``.5`` -> ``0.5``, ``-0`` -> ``0``. Returns None when the text is not a single number."""
    cleaned = re.sub(r"[\s,$]", "", text).replace("\u2212", "-").rstrip(".")
    if not _CANONICAL.fullmatch(cleaned):
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:  # pragma: no cover - the pattern above admits only valid decimals
        return None
    if value == 0:
        return "0"
    if value == value.to_integral_value():
        return str(value.to_integral_value())
    return format(value.normalize(), "f")


def numbers(text: str) -> list[str]:
    """Every number in the text, normalised, in order."""
    found = (normalize_number(match.group(0)) for match in _NUMBER.finditer(text))
    return [number for number in found if number is not None]


def strict_answer(completion: str) -> str | None:
    """The number right after the first ``####`` (the model's answer line), normalised; None if there is none."""
    if "####" not in completion:
        return None
    after = completion.split("####", 1)[1]
    match = _NUMBER.match(after.lstrip(" \t"))
    return normalize_number(match.group(0)) if match else None


def flexible_answer(completion: str) -> str | None:
    """The last number anywhere in the completion, normalised."""
    found = numbers(completion)
    return found[-1] if found else None


class GSM8KScorerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_new_tokens: int | None = None
    """Decoding budget; default: ``evaluation.max_new_tokens`` (512 in the paper)."""


class GSM8KExactMatch:
    """GSM8K exact match (MuToR protocol): strict after ``####`` and flexible (last number)."""

    name: ClassVar[str] = "gsm8k"
    Params: ClassVar[type] = GSM8KScorerParams
    main_metric: ClassVar[str] = "exact_match"

    def __init__(self, params: GSM8KScorerParams):
        self.params = params

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult:
        completions = context.generate(examples, self.params.max_new_tokens)
        samples: list[dict[str, Any]] = []
        for index, (example, completion) in enumerate(zip(examples, completions)):
            gold = normalize_number(str(example.record["gold"]))
            strict, flexible = strict_answer(completion), flexible_answer(completion)
            strict_ok = gold is not None and strict == gold
            flexible_ok = gold is not None and flexible == gold
            samples.append(
                {
                    "index": index,
                    "question": example.record.get("question", example.prompt),
                    "completion": completion,
                    "gold": gold,
                    "prediction": strict,
                    "prediction_flexible": flexible,
                    "correct": strict_ok,
                    "scores": {"exact_match": strict_ok, "exact_match_flexible": flexible_ok},
                }
            )
        return ScoreResult(metrics=mean_scores(samples, ("exact_match", "exact_match_flexible")), samples=samples)


def mean_scores(samples: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, float]:
    """Each metric as the mean of its per-sample ``scores`` (0 when there are no samples)."""
    n = max(len(samples), 1)
    return {name: sum(float(row["scores"][name]) for row in samples) / n for name in names}


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
        samples = []
        for index, (example, completion) in enumerate(zip(examples, completions)):
            gold, prediction = " ".join(example.answer.split()), " ".join(completion.split())
            correct = prediction == gold
            samples.append({"index": index, "prompt": example.prompt, "gold": gold, "prediction": prediction,
                            "correct": correct, "scores": {"exact_match": correct}})
        return ScoreResult(metrics=mean_scores(samples, ("exact_match",)), samples=samples)
