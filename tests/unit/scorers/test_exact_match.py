"""The exact-match scorer on hand-made completions."""

from __future__ import annotations

from helpers import CannedContext
from mtp_bench.api.task import Example
from mtp_bench.scorers.exact_match import AnswerExactMatch
from mtp_bench.scorers.exact_match_params import ExactMatchParams


def test_answer_exact_match_normalises_whitespace() -> None:
    examples = [Example("p", " 3  7 9", {}), Example("p", " 3 7 9", {})]
    result = AnswerExactMatch(ExactMatchParams()).score(CannedContext(["3 7\n9", "3 7 8"]), examples)
    assert result.metrics == {"exact_match": 0.5}
    assert [s["scores"]["exact_match"] for s in result.samples] == [True, False]
