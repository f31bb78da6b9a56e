"""The ``exact_match`` scorer: the completion equals the reference answer, both whitespace-normalised (synthetic
tasks whose answer is a fixed string: a sum, a path, a reversed string)."""

from __future__ import annotations

from typing import Any, ClassVar

from mtp_bench.api.scorer import EvalContext, ScoreResult, score_each
from mtp_bench.api.task import Example
from mtp_bench.scorers.exact_match_params import ExactMatchParams


class AnswerExactMatch:
    """The completion equals the reference answer (both whitespace-normalised): for synthetic tasks whose answer
    is a fixed string (a path, a sum)."""

    name: ClassVar[str] = "exact_match"
    Params: ClassVar[type] = ExactMatchParams
    main_metric: ClassVar[str] = "exact_match"

    def __init__(self, params: ExactMatchParams):
        self.params = params

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult:
        return score_each(context, examples, self.params.max_new_tokens, self.judge, ("exact_match",))

    @staticmethod
    def judge(index: int, example: Example, completion: str) -> dict[str, Any]:
        gold, prediction = " ".join(example.answer.split()), " ".join(completion.split())
        correct = prediction == gold
        return {"index": index, "prompt": example.prompt, "gold": gold, "prediction": prediction,
                "correct": correct, "scores": {"exact_match": correct}}
