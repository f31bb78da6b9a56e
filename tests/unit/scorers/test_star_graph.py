"""The star-graph scorer on a hand-drawn graph: full-path and first-step accuracy and the valid-path rate, directed
and undirected."""

from __future__ import annotations

import pytest

from helpers import CannedContext
from mtp_bench.api.task import Example
from mtp_bench.scorers.star_graph import StarGraphParams, StarGraphScorer, parse_path

# A star with start 0, arms 0 -> 1 -> 2 and 0 -> 3 -> 4; the goal is 4.
STAR = {"path": [0, 3, 4], "start": 0, "goal": 4, "edges": [[0, 1], [1, 2], [0, 3], [3, 4]], "degree": 2}


@pytest.mark.parametrize(
    ("completion", "full", "first", "valid"),
    [
        ("0 3 4", True, True, True),
        ("0 3 4 | 9 9", True, True, True),  # reading stops at the first non-integer token
        ("0 1 2", False, False, False),  # the Clever-Hans failure: wrong first step, then the arm followed
        ("0 3", False, True, False),
        ("3 4", False, False, False),
        ("0 3 0 3 4", False, True, False),  # walks back against a directed edge
        ("", False, False, False),
    ],
)
def test_star_graph_metrics(completion: str, full: bool, first: bool, valid: bool) -> None:
    example = Example(prompt="0 1 | 1 2 | 0 3 | 3 4 / 0 4 =", answer=" 0 3 4", record=STAR)
    result = StarGraphScorer(StarGraphParams()).score(CannedContext([completion]), [example])
    assert result.metrics == {"full_path_accuracy": float(full), "first_step_accuracy": float(first),
                              "valid_path_rate": float(valid)}
    assert result.samples[0]["correct"] is full


def test_star_graph_undirected_accepts_walks_back_and_averages() -> None:
    examples = [Example("p", "", STAR)] * 2
    scorer = StarGraphScorer(StarGraphParams(directed=False))
    result = scorer.score(CannedContext(["0 3 0 3 4", "0 3 4"]), examples)
    assert result.metrics == {"full_path_accuracy": 0.5, "first_step_accuracy": 1.0, "valid_path_rate": 1.0}
    assert parse_path(" 12 7\n33 = 5") == [12, 7, 33]
