"""Pre-extracted VQ codes read from disk, in the layout LlamaGen's code extraction writes (ImageNet for GPU users).

LlamaGen's ``autoregressive/train/extract_codes_c2i.py`` writes, under its ``--code-path``, two folders
``<dataset><image_size>_codes/`` and ``<dataset><image_size>_labels/`` with one file per image, ``<i>.npy``
(i = 0, 1, ...): the codes, shape ``(1, n_aug, H*W)`` (``n_aug`` = 10 ten-crop views with ``--ten-crop``, else 2:
the image and its mirror image), and the label, shape ``(1,)``. This task reads those files as they are (codes of
shape ``(n_aug, H*W)``, ``(H*W,)`` or ``(H, W)`` are accepted too); no VQ model runs here, and generated codes decode
only with the user's VQ decoder (the ``image`` scorer's ``decoder`` param).

One augmentation per image is used, fixed for the whole run (``augmentation``); LlamaGen instead draws one afresh
each time it loads an image. The last ``test_size`` files are held out as the test split (held-out loss only: the
scorer samples every class regardless). Every record is held in memory as text and token ids, as for any task:
about 16 GB of host memory for ImageNet's 1,281,167 images.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mtp_bench.data.files import shown_path
from mtp_bench.data.image_codec import PrecomputedCodes, check_grid, check_label, image_vocabulary
from mtp_bench.errors import DataError
from mtp_bench.tasks.images import (
    ANSWER_TEMPLATE,
    CLASS_DROPOUT_DOC,
    PROMPT_TEMPLATE,
    dropout_hook,
    image_record,
)

_NAME = re.compile(r"^(\d+)\.npy$")


class ImageCodesParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    path: str
    """LlamaGen's ``--code-path``: the folder that holds ``<dataset><image_size>_codes/`` and ``_labels/``."""

    dataset: str = "imagenet"
    """LlamaGen's ``--dataset`` (the folder-name prefix)."""

    image_size: int = Field(default=256, ge=16)
    """LlamaGen's ``--image-size`` (folder-name suffix); the grid is ``image_size / downsample`` on each side."""

    downsample: int = Field(default=16, ge=1)
    """The VQ model's downsampling factor (LlamaGen's VQ-16: 16, so 256 x 256 images are 16 x 16 codes)."""

    codebook_size: int = Field(default=16384, ge=2, le=16384)
    """Codes are ``0 .. codebook_size - 1`` (LlamaGen's VQ-16: 16,384)."""

    num_classes: int = Field(default=1000, ge=1, le=1000)
    """Labels are ``0 .. num_classes - 1`` (ImageNet: 1,000)."""

    augmentation: int | Literal["random"] = 0
    """Which of an image's stored views is used: an index (0: the first; with ``--ten-crop`` the views are
    torchvision's TenCrop order, 4 = the centre crop), or ``random``: one drawn per image with ``seed`` (fixed for
    the run, the same for every trial)."""

    test_size: int = Field(default=1000, ge=1)
    """The last ``test_size`` files are the test split."""

    limit: int | None = Field(default=None, ge=2)
    """Read only the first ``limit`` files (quick runs); None: all."""

    seed: int = 0
    """Seed of ``augmentation: random``."""

    class_dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description=CLASS_DROPOUT_DOC)


class ImageCodes:
    """Class-conditional generation of pre-extracted VQ codes (LlamaGen's extraction layout)."""

    name: ClassVar[str] = "image_codes"
    Params: ClassVar[type] = ImageCodesParams
    prompt_template: ClassVar[str] = PROMPT_TEMPLATE
    answer_template: ClassVar[str] = ANSWER_TEMPLATE
    tokenizer_kind: ClassVar[Literal["bpe", "word"]] = "word"

    def __init__(self, params: ImageCodesParams):
        self.params = params
        if params.image_size % params.downsample:
            raise DataError(f"image_codes: image_size {params.image_size} is not a multiple of downsample "
                            f"{params.downsample}")
        side = params.image_size // params.downsample
        self.grid = (side, side)

    @property
    def num_classes(self) -> int:
        return self.params.num_classes

    @property
    def folders(self) -> tuple[Path, Path]:
        base = Path(self.params.path)
        stem = f"{self.params.dataset}{self.params.image_size}"
        return base / f"{stem}_codes", base / f"{stem}_labels"

    def image_tokenizer(self) -> PrecomputedCodes:
        return PrecomputedCodes(self.grid, self.params.codebook_size)

    def vocabulary(self) -> list[str]:
        return image_vocabulary(self.params.num_classes, self.params.codebook_size)

    def condition_dropout(self) -> tuple[str, float] | None:
        return dropout_hook(self.params.class_dropout)

    def _indices(self) -> list[int]:
        """File indices present in both folders (0 .. N-1, no gaps), or a DataError saying what is wrong."""
        codes_dir, labels_dir = self.folders
        for folder in (Path(self.params.path), codes_dir, labels_dir):
            if not folder.is_dir():
                raise DataError(f"image_codes: codes folder {shown_path(folder)} (expected LlamaGen's "
                                f"extract_codes_c2i.py output: {codes_dir.name}/ and {labels_dir.name}/ under path)")
        found = []
        for folder in (codes_dir, labels_dir):
            numbers = sorted(int(m.group(1)) for name in _listdir(folder) if (m := _NAME.match(name)))
            if not numbers:
                raise DataError(f"image_codes: no <i>.npy files in {folder}")
            found.append(numbers)
        codes, labels = found
        if codes != labels:
            missing = sorted(set(codes) ^ set(labels))[:3]
            raise DataError(f"image_codes: {codes_dir.name} and {labels_dir.name} hold different files "
                            f"(e.g. {', '.join(f'{i}.npy' for i in missing)} is in only one)")
        if codes != list(range(len(codes))):
            gap = next(i for i, n in enumerate(codes) if n != i)
            raise DataError(f"image_codes: {codes_dir}: files are not numbered 0..{len(codes) - 1} ({gap}.npy is "
                            f"missing)")
        if self.params.limit is not None:
            codes = codes[: self.params.limit]
        if len(codes) <= self.params.test_size:
            raise DataError(f"image_codes: {len(codes)} images, but test_size is {self.params.test_size}: nothing "
                            f"left to train on")
        return codes

    def _read(self, index: int, rng: random.Random) -> tuple[int, np.ndarray]:
        codes_dir, labels_dir = self.folders
        code_file, label_file = codes_dir / f"{index}.npy", labels_dir / f"{index}.npy"
        try:
            raw, label = np.load(code_file, allow_pickle=False), np.load(label_file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"image_codes: cannot read {code_file} or {label_file} ({exc})") from None
        cells = self.grid[0] * self.grid[1]
        views = raw.reshape(-1, cells) if raw.size % cells == 0 else raw.reshape(1, -1)
        choice = self.params.augmentation
        view = rng.randrange(len(views)) if choice == "random" else choice
        if view >= len(views):
            raise DataError(f"image_codes: {code_file} holds {len(views)} views, augmentation {view} asked for")
        grid = check_grid(views[view], self.grid, self.params.codebook_size, str(code_file))
        return check_label(label, self.params.num_classes, str(label_file)), grid

    def preflight(self) -> int:
        """The folders exist and pair up, and the first and last files read, fit the grid, the codebook and the class
        range (every file is checked when the records are read)."""
        indices = self._indices()
        rng = random.Random(0)
        for index in (indices[0], indices[-1]):
            self._read(index, rng)
        return len(indices) - self.params.test_size

    def records(self, split: Literal["train", "test"]) -> list[dict[str, Any]]:
        if split not in ("train", "test"):
            raise DataError(f"image_codes: unknown split {split!r} (train or test)")
        indices = self._indices()
        cut = len(indices) - self.params.test_size
        chosen = indices[:cut] if split == "train" else indices[cut:]
        records = []
        for index in chosen:
            rng = random.Random(f"image_codes/{self.params.seed}/{index}")  # per image: the split does not matter
            label, grid = self._read(index, rng)
            records.append(image_record(label, grid.astype(np.int16), index))  # 16,384 codes fit
        return records


def _listdir(folder: Path) -> list[str]:
    try:
        return [entry.name for entry in os.scandir(folder)]
    except OSError as exc:
        raise DataError(f"image_codes: cannot list {folder} ({exc.strerror or exc})") from None
