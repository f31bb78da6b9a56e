"""Scorers on hand-made completions: GSM8K answer extraction and normalisation on tricky strings, star-graph path
metrics on a hand-drawn graph."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtp_bench import registry
from mtp_bench.data.tasks import Example
from mtp_bench.evaluation.gsm8k_scorer import (
    AnswerExactMatch,
    ExactMatchParams,
    GSM8KExactMatch,
    GSM8KScorerParams,
    flexible_answer,
    normalize_number,
    strict_answer,
)
from mtp_bench.evaluation.star_graph_scorer import StarGraphParams, StarGraphScorer, parse_path


class CannedContext:
    """Stands in for EvalContext: returns fixed completions and records the decoding budget asked for."""

    def __init__(self, completions: list[str]):
        self.completions = completions
        self.budgets: list[int | None] = []

    def generate(self, examples: list[Example], max_new_tokens: int | None = None) -> list[str]:
        self.budgets.append(max_new_tokens)
        assert len(examples) == len(self.completions)
        return list(self.completions)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$1,000", "1000"), ("-3.50", "-3.5"), ("18.", "18"), ("1,000.50", "1000.5"), (".5", "0.5"), ("$ 7", "7"),
        ("-$5", "-5"), ("$-5", "-5"), ("\u22124", "-4"), ("0.50", "0.5"), ("-0", "0"), ("100", "100"),
        ("nan", None), ("seven", None), ("", None), ("1.2.3", None),
    ],
)
def test_normalize_number(text: str, expected: str | None) -> None:
    assert normalize_number(text) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("He pays 2 * 500 = 1000.\n#### 1000", "1000"),
        ("####18.", "18"),
        ("#### $1,000.", "1000"),
        ("#### -3.50", "-3.5"),
        ("#### 1,000.50 dollars", "1000.5"),
        ("#### 1,8", "18"),  # the comma rule of lm-eval and the paper: commas between digits are dropped
        ("#### 12,34.5", "1234.5"),
        ("first #### 7\n#### 2", "7"),  # the model's first answer line counts
        ("#### The answer is 5", None),  # strict: the number must follow the mark
        ("The answer is 18", None),
        ("####", None),
    ],
)
def test_strict_answer_reads_the_number_after_the_mark(completion: str, expected: str | None) -> None:
    assert strict_answer(completion) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.", "18"),
        ("between 3-4 apples", "4"),  # a hyphen between numbers is not a minus sign
        ("it is -4 degrees", "-4"),
        ("1,2,3", "123"),  # commas between digits are dropped, as lm-eval and the paper do
        ("take 3, 4 or 5", "5"),  # a comma and a space separate numbers
        ("costs $1,000.50 in total", "1000.5"),
        ("about .5 of it", "0.5"),
        ("x = -2.", "-2"),
        ("no numbers here", None),
    ],
)
def test_flexible_answer_takes_the_last_number(completion: str, expected: str | None) -> None:
    assert flexible_answer(completion) == expected


def test_gsm8k_scorer_metrics_and_samples() -> None:
    golds = ["1,000", "-3", "18", "5"]
    examples = [Example(prompt=f"Question: q{i}\n\nAnswer:", answer="", record={"question": f"q{i}", "gold": g})
                for i, g in enumerate(golds)]
    completions = ["So $1,000 in all.\n#### $1,000", "#### -3.0", "Total 18.", "#### 6\nActually 5"]
    context = CannedContext(completions)
    result = GSM8KExactMatch(GSM8KScorerParams(max_new_tokens=64)).score(context, examples)
    assert context.budgets == [64]
    # strict: right, right, no "####" line, wrong; flexible (last number): 1000, -3, 18, 5 -> all right.
    assert result.metrics == {"exact_match": 0.5, "exact_match_flexible": 1.0}
    assert [s["correct"] for s in result.samples] == [True, True, False, False]
    assert [s["index"] for s in result.samples] == [0, 1, 2, 3]
    assert result.samples[2]["scores"] == {"exact_match": False, "exact_match_flexible": True}
    assert result.samples[0]["gold"] == "1000" and result.samples[3]["prediction"] == "6"


def test_answer_exact_match_normalises_whitespace() -> None:
    examples = [Example("p", " 3  7 9", {}), Example("p", " 3 7 9", {})]
    result = AnswerExactMatch(ExactMatchParams()).score(CannedContext(["3 7\n9", "3 7 8"]), examples)
    assert result.metrics == {"exact_match": 0.5}
    assert [s["scores"]["exact_match"] for s in result.samples] == [True, False]


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


def test_scorers_are_registered_plugins() -> None:
    assert registry.load_scorer("star_graph") is StarGraphScorer
    assert registry.load_scorer("gsm8k") is GSM8KExactMatch
    for cls in (StarGraphScorer, GSM8KExactMatch, AnswerExactMatch):
        assert cls.main_metric in {"full_path_accuracy", "exact_match"}
        with pytest.raises(ValueError):
            cls.Params.model_validate({"no_such_setting": 1})


@pytest.mark.parametrize("completion", ["#### 1,8", "#### 1,000", "#### 1,234.50.", "#### -7", "#### 12,34"])
def test_strict_reading_agrees_with_the_lm_eval_cross_check_task(completion: str) -> None:
    """The shipped ``gsm8k_mutor_local`` task reads the strict answer with its regex filter and then drops what
    ``regexes_to_ignore`` names (commas, ``$``, a final ``.``); our scorer must read the same number."""
    import re

    import yaml

    from mtp_bench.evaluation import lm_eval_bridge

    task = yaml.safe_load((Path(lm_eval_bridge.__file__).parent / "lm_eval_tasks" / "gsm8k_mutor_local.yaml")
                          .read_text())
    strict = next(f for f in task["filter_list"] if f["name"] == "strict-match")
    match = re.search(strict["filter"][0]["regex_pattern"], completion)
    theirs = match.group(1)
    for pattern in task["metric_list"][0]["regexes_to_ignore"]:
        theirs = re.sub(pattern, "", theirs)
    assert normalize_number(theirs) == strict_answer(completion)
    assert task["generation_kwargs"]["until"] == []  # no stop string beyond EOS, like our decoder
