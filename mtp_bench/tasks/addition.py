"""Lookahead arithmetic: multi-digit addition with the sum written most-significant digit first.

The first digit of the sum depends on carries from every lower digit, none of them written yet, so a next-token
learner has to do the whole addition "in its head" before emitting it; written least-significant digit first
(``reverse: true``, the easy control) every digit depends only on digits already seen and the carry just made. NTP
learns the forward order far more slowly than the reversed one (Lee et al. 2023, "Teaching arithmetic to small
transformers"), which makes it a CPU-sized task where predicting further ahead can matter.

Digits are separated by spaces (one token each with ``tokenizer_kind = "word"``):
``3 4 5 2 1 + 0 9 8 7 6 =`` -> `` 0 4 4 3 9 7`` (padded: the sum always has ``digits + 1`` digits).
Records: ``a``, ``b``, ``sum`` (ints), ``digits``, ``reverse`` and the text fields the templates use.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mtp_bench.errors import DataError
from mtp_bench.tasks.star_graph import draw_distinct


class AdditionParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)

    digits: int = Field(default=5, ge=1, le=30)
    """Digits per operand: both are drawn uniformly from ``0 .. 10**digits - 1``."""

    reverse: bool = False
    """Write the sum least-significant digit first (the easy control); the operands stay most-significant first."""

    pad: bool = True
    """Zero-pad the operands to ``digits`` and the sum to ``digits + 1`` digits, so every example has the same shape
    and the sum's leading digit is the final carry; off writes numbers as usual (``7``, not ``00007``)."""

    train_size: int = Field(default=100_000, ge=1)
    """Training problems (distinct pairs). Fresh problems every step need ``train_size >= max_steps x effective
    batch``; smaller is a fixed set seen for several epochs."""

    test_size: int = Field(default=2_000, ge=1)
    """Test problems; no test pair is also a training pair (``data.eval_limit`` caps how many are scored)."""

    seed: int = 0
    """Seed of the problem streams. Independent of the trial seed: every method and seed sees the same problems."""

    @model_validator(mode="after")
    def _feasible(self) -> AdditionParams:
        pairs = 10 ** (2 * self.digits)
        if self.train_size + self.test_size > pairs // 2:
            raise ValueError(
                f"train_size + test_size = {self.train_size + self.test_size} distinct problems asked for, but "
                f"{self.digits}-digit operands give only {pairs} pairs; ask for at most half of them or raise digits"
            )
        return self


def spaced(number: int, width: int | None) -> str:
    """``spaced(407, 5) == "0 0 4 0 7"``; ``width=None`` writes no leading zeros."""
    text = str(number) if width is None else str(number).zfill(width)
    return " ".join(text)


def make_problem(rng: random.Random, p: AdditionParams) -> dict[str, Any]:
    a, b = rng.randrange(10**p.digits), rng.randrange(10**p.digits)
    total = a + b
    sum_digits = spaced(total, p.digits + 1 if p.pad else None)
    return {
        "a": a,
        "b": b,
        "sum": total,
        "digits": p.digits,
        "reverse": p.reverse,
        "a_text": spaced(a, p.digits if p.pad else None),
        "b_text": spaced(b, p.digits if p.pad else None),
        "sum_text": " ".join(reversed(sum_digits.split())) if p.reverse else sum_digits,
    }


class Addition:
    """Multi-digit addition, sum written most-significant digit first (or reversed, the easy control)."""

    name: ClassVar[str] = "addition"
    Params: ClassVar[type] = AdditionParams
    prompt_template: ClassVar[str] = "{a_text} + {b_text} ="
    answer_template: ClassVar[str] = " {sum_text}"
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "word"

    def __init__(self, params: AdditionParams):
        self.params = params

    def _draw(self, split: str, size: int, exclude: set | None) -> tuple[list[dict[str, Any]], set]:
        rng = random.Random(f"addition/{split}/{self.params.seed}")
        return draw_distinct(lambda r: make_problem(r, self.params), lambda rec: (rec["a"], rec["b"]), rng, size,
                             exclude, f"{split} problems")

    def preflight(self) -> int:
        """Generated on the fly: the settings were checked with the params; the training set has ``train_size``."""
        return self.params.train_size

    def records(self, split: Literal["train", "test"]) -> list[dict[str, Any]]:
        # Test first, training skips its pairs: the test set does not move when train_size changes.
        if split not in ("train", "test"):
            raise DataError(f"addition: unknown split {split!r} (train or test)")
        test, test_keys = self._draw("test", self.params.test_size, None)
        return test if split == "test" else self._draw("train", self.params.train_size, test_keys)[0]
