"""Multi-step arithmetic word problems in GSM8K's format, generated from templates: a GSM8K-shaped task that a tiny
model can learn on a CPU.

A problem follows one quantity through ``steps`` operations (add, subtract, multiply, divide exactly); the solution
has one line per step with a GSM8K calculator note (``12 * 3 = <<12*3=36>>36``) and ends with ``#### n``. Records
carry ``question``, ``answer`` and ``gold`` exactly like :mod:`mtp_bench.tasks.gsm8k`, so the ``gsm8k`` scorer and the
prompt format apply unchanged, plus ``steps`` and ``operations`` (the operations used, in order) for analysis.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mtp_bench.errors import DataError
from mtp_bench.tasks.star_graph import draw_distinct

Operation = Literal["add", "sub", "mul", "div"]

NAMES = [("Ava", "she"), ("Liam", "he"), ("Mia", "she"), ("Noah", "he"), ("Zoe", "she"), ("Omar", "he"),
         ("Lena", "she"), ("Ravi", "he"), ("Sara", "she"), ("Tom", "he"), ("Nina", "she"), ("Kai", "he"),
         ("Ines", "she"), ("Jon", "he"), ("Maya", "she"), ("Leo", "he")]
ITEMS = ["apples", "marbles", "stickers", "cookies", "pencils", "coins", "books", "stamps", "shells", "cards", "eggs",
         "beads", "candies", "balloons", "buttons", "crayons"]

# (question sentence, solution line) per operation; {c} current amount, {y} operand, {n} result.
START = ["{Name} has {x} {item}.", "{Name} starts the day with {x} {item}.", "{Name} collected {x} {item} last week."]
STEPS: dict[str, list[tuple[str, str]]] = {
    "add": [
        ("{Pron} buys {y} more {item}.", "After buying more, {pron} has {c} + {y} = <<{c}+{y}={n}>>{n} {item}."),
        ("A friend gives {obj} {y} {item}.", "With the gift, {pron} has {c} + {y} = <<{c}+{y}={n}>>{n} {item}."),
        ("{Pron} finds another {y} {item}.", "{Pron} then has {c} + {y} = <<{c}+{y}={n}>>{n} {item}."),
    ],
    "sub": [
        ("{Pron} gives {y} {item} to a friend.", "After giving {y} away, {pron} has {c} - {y} = <<{c}-{y}={n}>>{n} "
         "{item}."),
        ("{Pron} loses {y} of the {item}.", "{Pron} has {c} - {y} = <<{c}-{y}={n}>>{n} {item} left."),
        ("{Pron} uses {y} {item} for a project.", "That leaves {c} - {y} = <<{c}-{y}={n}>>{n} {item}."),
    ],
    "mul": [
        ("Then {pron} ends up with {y} times as many {item}.", "{Pron} now has {c} * {y} = <<{c}*{y}={n}>>{n} {item}."),
        ("Each of {poss} {item} is traded for {y} new ones.", "Trading gives {obj} {c} * {y} = <<{c}*{y}={n}>>{n} "
         "{item}."),
    ],
    "div": [
        ("{Pron} splits the {item} equally into {y} bags and keeps one bag.", "One bag holds {c} / {y} = "
         "<<{c}/{y}={n}>>{n} {item}."),
        ("{Pron} shares the {item} equally among {y} people, {obj}self included.", "Each person gets {c} / {y} = "
         "<<{c}/{y}={n}>>{n} {item}."),
    ],
}
QUESTIONS = ["How many {item} does {name} have now?", "How many {item} does {name} have at the end?"]
PRONOUNS = {"she": ("her", "her"), "he": ("him", "his")}  # object, possessive


class WordProblemParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)

    min_steps: int = Field(default=2, ge=1, le=12)
    """Fewest operations in a problem (solution lines before ``#### n``)."""

    max_steps: int = Field(default=4, ge=1, le=12)
    """Most operations; each problem draws its count uniformly from ``min_steps .. max_steps``."""

    operations: list[Operation] = Field(default_factory=lambda: ["add", "sub", "mul", "div"], min_length=1)
    """Operations to draw from: ``add``, ``sub``, ``mul``, ``div`` (division is always exact)."""

    start_range: tuple[int, int] = (2, 50)
    """Inclusive range of the starting amount."""

    add_range: tuple[int, int] = (1, 20)
    """Inclusive range of the amounts added or subtracted."""

    factor_range: tuple[int, int] = (2, 5)
    """Inclusive range of multipliers and divisors (at least 2)."""

    max_value: int = Field(default=1000, ge=1)
    """No intermediate amount may exceed this; an operation that would is not drawn at that step."""

    train_size: int = Field(default=20_000, ge=1)
    """Training problems (distinct questions)."""

    test_size: int = Field(default=1_000, ge=1)
    """Test problems; no test question is also a training question."""

    seed: int = 0
    """Seed of the problem streams. Independent of the trial seed: every method and seed sees the same problems."""

    @field_validator("start_range", "add_range", "factor_range")
    @classmethod
    def _ordered(cls, bounds: tuple[int, int]) -> tuple[int, int]:
        low, high = bounds
        if low < 0 or low > high:
            raise ValueError(f"expected 0 <= low <= high, got {list(bounds)}")
        return bounds

    @model_validator(mode="after")
    def _consistent(self) -> WordProblemParams:
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) is above max_steps ({self.max_steps})")
        if self.factor_range[0] < 2 and ({"mul", "div"} & set(self.operations)):
            raise ValueError("factor_range must start at 2 or more (multiplying or dividing by 1 is no step)")
        if self.start_range[0] < 1:
            raise ValueError("start_range must start at 1 or more")
        if self.start_range[1] > self.max_value:
            raise ValueError(f"start_range reaches {self.start_range[1]}, above max_value {self.max_value}")
        return self


def _choices(current: int, p: WordProblemParams) -> dict[str, list[int]]:
    """Operands each allowed operation can take at this amount (results stay in 1 .. max_value)."""
    lo, hi = p.add_range
    f_lo, f_hi = p.factor_range
    options = {
        "add": [y for y in range(max(lo, 1), hi + 1) if current + y <= p.max_value],
        "sub": [y for y in range(max(lo, 1), hi + 1) if y < current],
        "mul": [k for k in range(f_lo, f_hi + 1) if current * k <= p.max_value],
        "div": [k for k in range(f_lo, f_hi + 1) if current % k == 0],
    }
    return {op: values for op, values in options.items() if op in p.operations and values}


def make_problem(rng: random.Random, p: WordProblemParams) -> dict[str, Any] | None:
    """One problem, or None when the drawn start leaves no allowed operation at some step (the caller redraws)."""
    name, pron = rng.choice(NAMES)
    obj, poss = PRONOUNS[pron]
    item = rng.choice(ITEMS)
    words = {"name": name, "Name": name, "pron": pron, "Pron": pron.capitalize(), "obj": obj, "poss": poss,
             "item": item}
    current = rng.randint(*p.start_range)
    question = [rng.choice(START).format(x=current, **words)]
    lines, used = [], []
    for _ in range(rng.randint(p.min_steps, p.max_steps)):
        options = _choices(current, p)
        if not options:
            return None
        op = rng.choice(sorted(options))
        y = rng.choice(options[op])
        result = {"add": current + y, "sub": current - y, "mul": current * y, "div": current // y}[op]
        ask, solve = rng.choice(STEPS[op])
        values = {"c": current, "y": y, "n": result}
        question.append(ask.format(**values, **words))
        lines.append(solve.format(**values, **words))
        used.append(op)
        current = result
    question.append(rng.choice(QUESTIONS).format(**words))
    answer = "\n".join([*lines, f"#### {current}"])
    return {"question": " ".join(question), "answer": answer, "gold": str(current), "steps": len(used),
            "operations": used}


class WordProblems:
    """Templated multi-step arithmetic word problems in GSM8K's format (calculator notes, ``#### n``)."""

    name: ClassVar[str] = "word_problems"
    Params: ClassVar[type] = WordProblemParams
    prompt_template: ClassVar[str] = "Question: {question}\n\nAnswer:"  # GSM8K's (the MuToR paper's) format
    answer_template: ClassVar[str] = " {answer}"
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "bpe"

    def __init__(self, params: WordProblemParams):
        self.params = params

    def _draw(self, split: str, size: int, exclude: set | None) -> tuple[list[dict[str, Any]], set]:
        rng = random.Random(f"word_problems/{split}/{self.params.seed}")

        def draw(r: random.Random) -> dict[str, Any]:
            for _ in range(100):
                problem = make_problem(r, self.params)
                if problem is not None:
                    return problem
            raise DataError("word_problems: no problem fits these settings (raise max_value or widen the ranges)")

        return draw_distinct(draw, lambda rec: rec["question"], rng, size, exclude, f"{split} word problems")

    def preflight(self) -> int:
        """Generated on the fly: the settings were checked with the params; the training set has ``train_size``."""
        return self.params.train_size

    def records(self, split: Literal["train", "test"]) -> list[dict[str, Any]]:
        # Test first, training skips its questions: the test set does not move when train_size changes.
        if split not in ("train", "test"):
            raise DataError(f"word_problems: unknown split {split!r} (train or test)")
        test, test_keys = self._draw("test", self.params.test_size, None)
        return test if split == "test" else self._draw("train", self.params.train_size, test_keys)[0]
