"""Star-graph path finding (Bachmann & Nagarajan 2024): is the decoded path the one from start to goal?

The task's records carry ``path`` (the gold path, start and goal included), ``start``, ``goal`` and ``edges`` (pairs
``[u, v]``); the answer is the path's node ids separated by spaces. A completion is read as whitespace-separated
integers up to the first token that is not one.

Metrics:

- ``full_path_accuracy`` (main): the decoded path equals the gold path.
- ``first_step_accuracy``: the decoded path starts at the start node and its next node is the gold one. This is the
  step the next-token "Clever Hans" shortcut cannot learn (every later node is its parent's only child), so a model
  that learned only the shortcut sits at 1/degree here.
- ``valid_path_rate``: the decoded path runs from start to goal along edges of the graph, gold or not.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mtp_bench.api.scorer import EvalContext, ScoreResult, score_each
from mtp_bench.api.task import Example
from mtp_bench.scorers.star_graph_params import StarGraphParams

METRICS = ("full_path_accuracy", "first_step_accuracy", "valid_path_rate")


def parse_path(completion: str) -> list[int]:
    """Leading whitespace-separated integers of a completion (``"3 7 9 | 4"`` -> ``[3, 7, 9]``)."""
    path = []
    for token in completion.split():
        try:
            path.append(int(token))
        except ValueError:
            break
    return path


def is_valid_path(path: list[int], start: int, goal: int, edges: set[tuple[int, int]]) -> bool:
    """True when ``path`` goes from ``start`` to ``goal`` and every consecutive pair is an edge."""
    if len(path) < 2 or path[0] != start or path[-1] != goal:
        return False
    return all((u, v) in edges for u, v in zip(path, path[1:]))


class StarGraphScorer:
    """Star-graph full-path accuracy, first-step accuracy and valid-path rate."""

    name: ClassVar[str] = "star_graph"
    Params: ClassVar[type] = StarGraphParams
    main_metric: ClassVar[str] = "full_path_accuracy"

    def __init__(self, params: StarGraphParams):
        self.params = params

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult:
        return score_each(context, examples, self.params.max_new_tokens, self.score_one, METRICS)

    def score_one(self, index: int, example: Example, completion: str) -> dict[str, Any]:
        record = example.record
        gold = [int(node) for node in record["path"]]
        start, goal = int(record["start"]), int(record["goal"])
        edges = {(int(u), int(v)) for u, v in record["edges"]}
        if not self.params.directed:
            edges |= {(v, u) for u, v in edges}
        predicted = parse_path(completion)
        full = predicted == gold
        first = len(predicted) >= 2 and len(gold) >= 2 and predicted[0] == start and predicted[1] == gold[1]
        valid = is_valid_path(predicted, start, goal, edges)
        return {
            "index": index,
            "prompt": example.prompt,
            "completion": completion,
            "gold": gold,
            "prediction": predicted,
            "correct": full,
            "scores": {"full_path_accuracy": full, "first_step_accuracy": first, "valid_path_rate": valid},
        }
