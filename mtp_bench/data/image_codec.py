"""The image-tokeniser seam: pixels <-> a grid of codes, and codes <-> the words a sequence is made of.

An image task turns each image into ``H x W`` codes in ``0 .. codebook_size - 1`` and writes them in raster order as
words (``v0 v3 v16 ...``) after one class word (``c3``), so a preset's word tokenizer gives one id per code and the
whole text pipeline (training loop, every method, generation, logging) runs unchanged. ``c_null`` is the class word
of classifier-free guidance (the "no class" condition training drops labels to).

Two tokenisers ship: :class:`GreyLevels`, a built-in quantiser for small grey images (no model), and
:class:`PrecomputedCodes` for codes a VQ model wrote to disk beforehand (LlamaGen's ``extract_codes_c2i.py``): they
are read as they are, and only the user's VQ decoder can turn them back into pixels. numpy only (no torch).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from mtp_bench.errors import DataError

NULL_CLASS = "c_null"


def class_word(label: int) -> str:
    return f"c{int(label)}"


def code_word(code: int) -> str:
    return f"v{int(code)}"


def codes_text(codes: np.ndarray) -> str:
    """A code grid as the words of the answer, raster order (row by row)."""
    return " ".join(code_word(c) for c in np.asarray(codes).reshape(-1))


def image_vocabulary(num_classes: int, codebook_size: int) -> list[str]:
    """Every word an image task writes: class words, the null class and the codes."""
    return [*(class_word(k) for k in range(num_classes)), NULL_CLASS, *(code_word(c) for c in range(codebook_size))]


def check_grid(codes: np.ndarray, grid: tuple[int, int], codebook_size: int, where: str) -> np.ndarray:
    """``codes`` as an integer ``(H, W)`` array, or a DataError naming ``where`` (a file, a record)."""
    array = np.asarray(codes)
    if array.size != grid[0] * grid[1]:
        raise DataError(f"{where}: {array.size} codes (shape {tuple(array.shape)}), but the grid {grid[0]}x{grid[1]} "
                        f"needs {grid[0] * grid[1]}")
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{where}: codes must be integers, not {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= codebook_size:
        bad = low if low < 0 else high
        raise DataError(f"{where}: code {bad} is outside the codebook 0..{codebook_size - 1}")
    return array.reshape(grid).astype(np.int64)


def check_label(label: object, num_classes: int, where: str) -> int:
    try:
        value = int(np.asarray(label).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        raise DataError(f"{where}: the label {label!r} is not an integer") from None
    if not 0 <= value < num_classes:
        raise DataError(f"{where}: label {value} is outside the class range 0..{num_classes - 1}")
    return value


@runtime_checkable
class ImageTokenizer(Protocol):
    """Between pixels and a code grid. ``pixels`` are ``(H', W')`` grey or ``(H', W', 3)`` colour values in [0, 1]."""

    grid: tuple[int, int]
    codebook_size: int

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels -> an integer ``grid``-shaped array of codes."""
        ...

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """A code grid -> pixels in [0, 1]."""
        ...


class GreyLevels:
    """The built-in quantiser: one code per pixel, ``levels`` evenly spaced grey levels (code k = grey k/(levels-1)).
    Encoding rounds to the nearest level, so decode-then-encode is the identity on codes."""

    def __init__(self, grid: tuple[int, int], levels: int):
        if levels < 2:
            raise ValueError("a grey-level quantiser needs at least 2 levels")
        self.grid, self.codebook_size, self.levels = (int(grid[0]), int(grid[1])), int(levels), int(levels)

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        array = np.asarray(pixels, dtype=np.float64)
        if array.shape != self.grid:
            raise DataError(f"image of shape {array.shape} does not match the grid {self.grid[0]}x{self.grid[1]}")
        return np.rint(np.clip(array, 0.0, 1.0) * (self.levels - 1)).astype(np.int64)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes, dtype=np.float64).reshape(self.grid) / (self.levels - 1)


class PrecomputedCodes:
    """Codes written by a VQ model beforehand (read from disk, never encoded here). They decode only through the VQ
    model's own decoder, which the ``image`` scorer calls when one is configured (its ``decoder`` param)."""

    def __init__(self, grid: tuple[int, int], codebook_size: int):
        self.grid, self.codebook_size = (int(grid[0]), int(grid[1])), int(codebook_size)

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        raise DataError("pre-extracted VQ codes: encode images with the VQ model that wrote them "
                        "(e.g. LlamaGen's autoregressive/train/extract_codes_c2i.py)")

    def decode(self, codes: np.ndarray) -> np.ndarray:
        raise DataError("pre-extracted VQ codes decode only with the VQ model's decoder: set the image scorer's "
                        "`decoder` param (module:function)")
