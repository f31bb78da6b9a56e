"""The math scorer on hand-made completions: math-verify equivalence on known-equal and known-different answers, the
last box read, the scorer's metrics and samples, and scoring outside the main thread."""

from __future__ import annotations

import json

import pytest

from helpers import CannedContext, qa_example
from mtp_bench.scorers.math import MathAnswer, equivalent
from mtp_bench.scorers.math_params import MathParams


@pytest.mark.parametrize(
    ("gold", "completion"),
    [
        (r"\frac{1}{2}", r"so the answer is \boxed{0.5}"),
        (r"\frac{1}{2}", r"\boxed{\dfrac12}"),
        ("0.5", r"\boxed{\frac{1}{2}}"),
        (r"\frac{1}{2}", r"\boxed{1/2}"),
        (r"\frac{1}{2}", r"\boxed{\frac{2}{4}}"),
        (r"\sqrt{18}", r"hence $\boxed{3\sqrt{2}}$"),
        (r"\frac{\pi}{2}", r"\boxed{\pi/2}"),
        ("(1,2)", r"\boxed{(1, 2)}"),
        ("18", "#### 18"),  # a plain number without a box still reads (GSM8K-style test golds)
        ("7", r"so \boxed{7}. Check: 7+5=12"),  # the box wins over a later number
    ],
)
def test_math_equivalent_answers(gold: str, completion: str) -> None:
    assert equivalent(gold, completion)


@pytest.mark.parametrize(
    ("gold", "completion"),
    [
        (r"\frac{1}{2}", r"\boxed{\frac{1}{3}}"),
        ("0.5", r"\boxed{0.51}"),
        ("2", r"\boxed{-2}"),
        ("x^2", r"\boxed{x^3}"),
        ("(1,2)", r"\boxed{(2, 1)}"),
        ("3", "no answer here"),
        ("3", ""),
    ],
)
def test_math_different_answers(gold: str, completion: str) -> None:
    assert not equivalent(gold, completion)


@pytest.mark.parametrize(
    ("gold", "completion", "right"),
    [
        # the last box is the answer (MATH500 practice, the paper's official grader), not the set of every box
        (r"\frac{14}{3}", r"First \boxed{5}, wait, correction: \boxed{\frac{14}{3}}", True),
        ("5", r"First \boxed{5}, wait, correction: \boxed{\frac{14}{3}}", False),
        ("2", r"\boxed{1}, \boxed{2}", True),
        ("1", r"\boxed{1}, \boxed{2}", False),
        (r"\{1,2\}", r"\boxed{1}, \boxed{2}", False),
        # nested braces inside the last box, and a box inside a box
        (r"\left(3,\frac{\pi}{2}\right)", r"\boxed{1} then \boxed{\left( 3, \frac{\pi}{2} \right)}", True),
        (r"\frac{\sqrt{3}}{2}", r"so $\boxed{\frac{\sqrt{3}}{2}}$.", True),
        ("12", r"\boxed{\boxed{12}}", True),
        ("7", r"\fbox{7}", True),  # math-verify alone reads nothing from \fbox
        ("3", r"\boxed{3}. Check: \boxed{\frac{1", False),  # the last box never closes: cut off, no answer
        ("10", "no box: the answer is 10", True),  # no box at all: math-verify's own reading of the text
        ("7", r"\boxed 7", True),
    ],
)
def test_math_reads_the_last_box(gold: str, completion: str, right: bool) -> None:
    assert equivalent(gold, completion) is right


def test_math_scorer_metrics_and_samples() -> None:
    examples = [qa_example(problem="p1", gold=r"\frac{1}{2}"), qa_example(problem="p2", gold="3"),
                qa_example(problem="p3", gold="10")]
    context = CannedContext([r"\boxed{\dfrac12}", r"it is \boxed{4}", "the answer is 10"])
    result = MathAnswer(MathParams(max_new_tokens=700)).score(context, examples)
    assert context.budgets == [700]
    assert result.metrics == pytest.approx({"exact_match": 2 / 3, "boxed_rate": 2 / 3})
    assert [row["correct"] for row in result.samples] == [True, False, True]
    assert [row["scores"]["exact_match"] for row in result.samples] == [True, False, True]
    assert result.samples[1]["prediction"] == "4" and result.samples[0]["gold"] == r"\frac{1}{2}"
    json.dumps(result.samples)  # saved as a JSON-lines artifact: must serialise


def test_math_scorer_works_outside_the_main_thread() -> None:
    """A caller may score from a worker thread, where math-verify's signal-based time limits cannot be set."""
    import threading

    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(equivalent(r"\frac{1}{2}", r"\boxed{0.5}")))
    worker.start()
    worker.join()
    assert results == [True]
