"""The GSM8K scorer on hand-made completions: answer extraction and normalisation on tricky strings, its metrics
and samples, and where its strict reading agrees and differs with lm-eval's cross-check task."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import CannedContext
from mtp_bench.api.task import Example
from mtp_bench.scorers.gsm8k import GSM8KExactMatch, GSM8KScorerParams, flexible_answer, normalize_number, strict_answer


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


def lm_eval_strict_verdict(completion: str, answer: str) -> bool:
    """The shipped ``gsm8k_mutor_local`` task's strict verdict, computed by lm-eval's own code: its ``strict-match``
    regex filter on the completion, then its ``exact_match`` metric (with the YAML's ``regexes_to_ignore`` and
    ``ignore_case``) against GSM8K's full answer text."""
    import yaml
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    from mtp_bench.evaluation import lm_eval_bridge

    task = yaml.safe_load((Path(lm_eval_bridge.__file__).parent / "lm_eval_tasks" / "gsm8k_mutor_local.yaml")
                          .read_text())
    steps = next(f for f in task["filter_list"] if f["name"] == "strict-match")["filter"]
    assert [step["function"] for step in steps] == ["regex", "take_first"]
    assert task["generation_kwargs"]["until"] == []  # no stop string beyond EOS, like our decoder
    read = RegexFilter(steps[0]["regex_pattern"]).apply([[completion]], [{}])[0][0]
    metric = {key: value for key, value in task["metric_list"][0].items()
              if key in ("regexes_to_ignore", "ignore_case", "ignore_punctuation")}
    return bool(exact_match_hf_evaluate(predictions=[read], references=[answer], **metric)["exact_match"])


# (completion, gold, our strict verdict, lm-eval's): every case where the two strict readings differ is listed with
# differing verdicts; the README states the same list.
STRICT_CASES = [
    ("So 18 in all.\n#### 18", "18", True, True),
    ("#### 18.", "18", True, True),  # lm-eval drops a final "."
    ("#### 1,8", "18", True, True),  # both drop commas between digits
    ("#### 18,000", "18000", True, True),
    ("#### 12,34", "1234", True, True),
    ("#### -7", "-7", True, True),
    ("#### 18.5", "18.5", True, True),
    ("#### 18 apples", "18", True, True),
    ("#### 18\n#### 19", "18", True, True),  # both read the first answer line
    ("#### 17", "18", False, False),
    ("The answer is 18", "18", False, False),
    ("#### $18", "18", True, False),  # lm-eval's regex wants a digit or "-" right after "#### "
    ("#### $ 18", "18", True, False),
    ("####18", "18", True, False),  # ... and exactly one space after the mark
    ("####  18", "18", True, False),
    ("#### 018", "18", True, False),  # lm-eval compares strings: no number normalisation
    ("#### 18.0", "18", True, False),
    ("#### 18.50", "18.5", True, False),
    ("#### .5", "0.5", True, False),
    ("#### \u221218", "-18", True, False),  # a Unicode minus
    ("#### - 18", "-18", True, False),
    ("#### The answer is 5\n#### 5", "5", False, True),  # lm-eval takes the first "#### <number>" anywhere
]


@pytest.mark.parametrize(("completion", "gold", "ours", "theirs"), STRICT_CASES)
def test_strict_reading_against_the_lm_eval_cross_check_task(completion: str, gold: str, ours: bool,
                                                             theirs: bool) -> None:
    """Where our strict GSM8K reading and lm-eval's ``gsm8k_mutor_local`` agree and differ, measured by running
    both: GSM8K's reference is the full answer (``rationale\n#### 18``) that lm-eval strips to the number."""
    assert (strict_answer(completion) == normalize_number(gold)) is ours
    assert lm_eval_strict_verdict(completion, f"Some working.\n#### {gold}") is theirs
