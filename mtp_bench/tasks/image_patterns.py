"""A synthetic image task whose samples can be checked exactly, and where looking ahead in 2D should help.

Each class is a rule that fixes part of a ``size x size`` grid of ``colours`` from the rest; the free cells are
uniform random colours (not all one colour). In raster order a model must carry what it wrote a row (or half an
image) earlier to the cell it determines, e.g. ``repeat_rows`` makes the cell one row below equal to this one, the
2D offset (1, 0) a MuToR-2D register predicts:

- ``mirror_rows``: the bottom half mirrors the top half (row ``H-1-r`` equals row ``r``);
- ``mirror_columns``: every row is a palindrome (column ``W-1-c`` equals column ``c``);
- ``repeat_rows``: every row equals the first (vertical stripes);
- ``repeat_columns``: every row is one colour (horizontal stripes);
- ``shift_right``: each row is the row above rolled one cell right (diagonal stripes);
- ``rotate_180``: the grid equals itself turned half a turn.

:func:`check_pattern` is the exact validity check: the rule holds and the grid is not a single colour (a single
colour satisfies every rule, and the generator never draws one). Rules overlap (a ``repeat_rows`` grid also mirrors
its rows), so validity is "could the class have drawn this grid"; the scorer's classifier measures which class it
looks like.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mtp_bench.data.image_codec import GreyLevels, image_vocabulary
from mtp_bench.errors import DataError
from mtp_bench.tasks.images import (
    ANSWER_TEMPLATE,
    CLASS_DROPOUT_DOC,
    PROMPT_TEMPLATE,
    dropout_hook,
    image_record,
)
from mtp_bench.tasks.star_graph import draw_distinct

Rule = Literal["mirror_rows", "mirror_columns", "repeat_rows", "repeat_columns", "shift_right", "rotate_180"]
RULES: tuple[str, ...] = ("mirror_rows", "mirror_columns", "repeat_rows", "repeat_columns", "shift_right",
                          "rotate_180")


def free_cells(rule: str, size: int) -> int:
    """Cells a rule leaves free on a ``size x size`` grid (``size`` even)."""
    return size * size // 2 if rule in ("mirror_rows", "mirror_columns", "rotate_180") else size


def apply_rule(rule: str, grid: np.ndarray) -> np.ndarray:
    """A grid that satisfies ``rule``, built from the free cells of ``grid`` (the others are overwritten)."""
    g = grid.copy()
    h, w = g.shape
    if rule == "mirror_rows":
        g[h // 2 :] = g[: h // 2][::-1]
    elif rule == "mirror_columns":
        g[:, w // 2 :] = g[:, : w // 2][:, ::-1]
    elif rule == "repeat_rows":
        g[1:] = g[0]
    elif rule == "repeat_columns":
        g[:, 1:] = g[:, :1]
    elif rule == "shift_right":
        for r in range(1, h):
            g[r] = np.roll(g[r - 1], 1)
    elif rule == "rotate_180":
        g[h // 2 :] = g[: h // 2][::-1, ::-1]
    else:
        raise ValueError(f"unknown rule {rule!r}")
    return g


def check_pattern(rule: str, grid: np.ndarray) -> bool:
    """The exact validity check: ``grid`` satisfies ``rule`` and holds at least two colours."""
    grid = np.asarray(grid)
    return bool(np.array_equal(apply_rule(rule, grid), grid) and len(np.unique(grid)) > 1)


class ImagePatternsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    size: int = Field(default=8, ge=4, le=16, multiple_of=2)
    """Grid side (even): images are ``size x size`` codes."""

    colours: int = Field(default=4, ge=2, le=16)
    """Colours (the codebook size); pixels decode to ``colour / (colours - 1)`` grey."""

    rules: list[Rule] = Field(default_factory=lambda: list(RULES), min_length=2)
    """The classes, in label order (class k follows ``rules[k]``); each at most once."""

    train_size: int = Field(default=6000, ge=1)
    """Training images (distinct, classes drawn uniformly)."""

    test_size: int = Field(default=600, ge=1)
    """Test images, none of them a training image."""

    seed: int = 0
    """Seed of the image streams (independent of the trial seed: every trial sees the same images)."""

    class_dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description=CLASS_DROPOUT_DOC)

    @model_validator(mode="after")
    def _feasible(self) -> ImagePatternsParams:
        if len(set(self.rules)) != len(self.rules):
            raise ValueError("rules: each rule at most once")
        smallest = min(self.colours ** free_cells(rule, self.size) - self.colours for rule in self.rules)
        wanted = self.train_size + self.test_size
        if wanted > len(self.rules) * smallest // 4:
            raise ValueError(f"train_size + test_size = {wanted} images asked for, but the smallest class has only "
                             f"{smallest} distinct grids; ask for fewer or raise size or colours")
        return self


class ImagePatterns:
    """Synthetic class-conditional images: each class a symmetry or repetition rule, exactly checkable."""

    name: ClassVar[str] = "image_patterns"
    Params: ClassVar[type] = ImagePatternsParams
    prompt_template: ClassVar[str] = PROMPT_TEMPLATE
    answer_template: ClassVar[str] = ANSWER_TEMPLATE
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "word"

    def __init__(self, params: ImagePatternsParams):
        self.params = params

    @property
    def num_classes(self) -> int:
        return len(self.params.rules)

    def image_tokenizer(self) -> GreyLevels:
        return GreyLevels((self.params.size, self.params.size), self.params.colours)

    def vocabulary(self) -> list[str]:
        return image_vocabulary(self.num_classes, self.params.colours)

    def condition_dropout(self) -> tuple[str, float] | None:
        return dropout_hook(self.params.class_dropout)

    def check_sample(self, codes: np.ndarray, label: int) -> bool:
        return check_pattern(self.params.rules[label], codes)

    def preflight(self) -> int:
        return self.params.train_size

    def _draw(self, rng: random.Random) -> tuple[int, np.ndarray]:
        p = self.params
        label = rng.randrange(len(p.rules))
        while True:
            noise = np.array([rng.randrange(p.colours) for _ in range(p.size * p.size)]).reshape(p.size, p.size)
            grid = apply_rule(p.rules[label], noise)
            if len(np.unique(grid)) > 1:
                return label, grid

    def _split(self, split: str, size: int, exclude: set | None) -> tuple[list[tuple[int, np.ndarray]], set]:
        rng = random.Random(f"image_patterns/{split}/{self.params.seed}")
        return draw_distinct(self._draw, lambda item: (item[0], item[1].tobytes()), rng, size, exclude,
                             f"{split} images")

    def records(self, split: Literal["train", "test"]) -> list[dict[str, Any]]:
        # As star_graph: the test stream first, and training skips its images (disjoint splits, nested train sets).
        if split not in ("train", "test"):
            raise DataError(f"image_patterns: unknown split {split!r} (train or test)")
        test, test_keys = self._split("test", self.params.test_size, None)
        items = test if split == "test" else self._split("train", self.params.train_size, test_keys)[0]
        return [image_record(label, grid, index) for index, (label, grid) in enumerate(items)]
