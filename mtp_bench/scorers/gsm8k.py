"""GSM8K exact match under the MuToR paper's protocol: zero-shot ``Question: {q}\\n\\nAnswer:``, greedy decoding up to
512 new tokens (batched, KV cache: :meth:`EvalContext.generate`), the answer read after ``####`` and compared with the
gold number after normalisation.

``exact_match`` (strict) takes the number written right after the first ``####`` of the completion (spaces and a
``$`` may come between); ``exact_match_flexible`` takes the last number anywhere in the completion (the idea of
lm-eval's "flexible-extract"). Both sides are normalised: ``$1,000`` -> ``1000``, ``-3.50`` -> ``-3.5``,
``18.`` -> ``18``. Commas between digits are dropped whatever the grouping (``#### 1,8`` reads 18), the rule of the
MuToR paper's evaluation and of lm-eval's ``gsm8k`` tasks (``regexes_to_ignore: [","]``), so the two agree.

Per-sample rows carry ``correct`` (strict) and ``scores`` (one boolean per metric), which ``mtp-bench compare``
pairs across methods (two-level bootstrap over seeds and questions; McNemar within each seed).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from mtp_bench.api.scorer import EvalContext, ScoreResult, score_each, two_way_row
from mtp_bench.api.task import Example
from mtp_bench.scorers.gsm8k_params import GSM8KScorerParams

# A number as people and models write it: an optional sign and "$" (either order, spaces allowed), then digits in
# which a comma between two digits is dropped, as the MuToR paper's evaluation and lm-eval's gsm8k tasks do (they
# strip every ","): "1,000" is 1000 and "#### 1,8" is 18, not 1; then an optional decimal part, or a bare decimal
# (".5"). A comma followed by a space separates numbers ("3, 4"). A "." without digits after it ends the sentence
# ("18."). A hyphen right after a word character or ")" is a minus between two numbers or a range ("16-3", "3-4"),
# not a sign.
_SIGN = r"(?:(?<![\w)])[-\u2212]\s*)?"
_NUMBER = re.compile(_SIGN + r"(?:\$\s*(?:[-\u2212]\s*)?)?" + r"(?:\d+(?:,\d+)*(?:\.\d+)?|\.\d+)")
METRICS = ("exact_match", "exact_match_flexible")
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


class GSM8KExactMatch:
    """GSM8K exact match (MuToR protocol): strict after ``####`` and flexible (last number)."""

    name: ClassVar[str] = "gsm8k"
    Params: ClassVar[type] = GSM8KScorerParams
    main_metric: ClassVar[str] = "exact_match"

    def __init__(self, params: GSM8KScorerParams):
        self.params = params

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult:
        return score_each(context, examples, self.params.max_new_tokens, self.judge, METRICS)

    @staticmethod
    def judge(index: int, example: Example, completion: str) -> dict[str, Any]:
        gold = normalize_number(str(example.record["gold"]))
        return two_way_row(index, example, completion, gold, (strict_answer(completion), flexible_answer(completion)),
                           METRICS)
