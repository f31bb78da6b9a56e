"""Class-conditional generation of scikit-learn's bundled 8 x 8 handwritten digits (no download).

1,797 images of the ten digits, 17 grey levels (0..16) each pixel; the built-in grey-level quantiser keeps them
exactly at ``levels: 17`` (one code per pixel) or merges neighbouring levels when fewer are asked for. A fixed split
(a seeded shuffle) holds ``test_size`` images out. Sequences: ``c7 v0 v3 v16 ... <eos>`` (64 image tokens).
"""

from __future__ import annotations

import importlib.util
import random
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mtp_bench.data.image_codec import GreyLevels, image_vocabulary
from mtp_bench.errors import DataError
from mtp_bench.tasks.images import (
    ANSWER_TEMPLATE,
    CLASS_DROPOUT_DOC,
    PROMPT_TEMPLATE,
    dropout_hook,
    image_record,
)

N_DIGITS = 1797
GRID = (8, 8)


class ImageDigitsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    levels: int = Field(default=17, ge=2, le=17)
    """Grey levels of the quantiser (the codebook size): 17 keeps scikit-learn's 0..16 exactly; fewer merge levels."""

    test_size: int = Field(default=297, ge=10, le=897)
    """Images held out for testing (a seeded shuffle of the 1,797; the rest are the training split)."""

    split_seed: int = 0
    """Seed of the train/test shuffle (independent of the trial seed: every trial sees the same split)."""

    class_dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description=CLASS_DROPOUT_DOC)


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 images as floats in [0, 1], shape (N, 8, 8), and their labels."""
    if importlib.util.find_spec("sklearn") is None:
        raise DataError("image_digits reads scikit-learn's bundled digits: pip install scikit-learn")
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.asarray(digits.images, dtype=np.float64) / 16.0, np.asarray(digits.target, dtype=np.int64)


class ImageDigits:
    """scikit-learn's 8 x 8 digits, class-conditional (ten classes, grey-level codes)."""

    name: ClassVar[str] = "image_digits"
    Params: ClassVar[type] = ImageDigitsParams
    prompt_template: ClassVar[str] = PROMPT_TEMPLATE
    answer_template: ClassVar[str] = ANSWER_TEMPLATE
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "word"
    num_classes: ClassVar[int] = 10

    def __init__(self, params: ImageDigitsParams):
        self.params = params

    def image_tokenizer(self) -> GreyLevels:
        return GreyLevels(GRID, self.params.levels)

    def vocabulary(self) -> list[str]:
        return image_vocabulary(self.num_classes, self.params.levels)

    def condition_dropout(self) -> tuple[str, float] | None:
        return dropout_hook(self.params.class_dropout)

    def preflight(self) -> int:
        if importlib.util.find_spec("sklearn") is None:
            raise DataError("image_digits reads scikit-learn's bundled digits: pip install scikit-learn")
        return N_DIGITS - self.params.test_size

    def records(self, split: Literal["train", "test"]) -> list[dict[str, Any]]:
        if split not in ("train", "test"):
            raise DataError(f"image_digits: unknown split {split!r} (train or test)")
        pixels, labels = load_digit_images()
        order = list(range(len(labels)))
        random.Random(f"image_digits/{self.params.split_seed}").shuffle(order)
        chosen = sorted(order[: self.params.test_size] if split == "test" else order[self.params.test_size :])
        tokenizer = self.image_tokenizer()
        return [image_record(labels[i], tokenizer.encode(pixels[i]), i) for i in chosen]
