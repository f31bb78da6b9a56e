"""The sample grid the image scorer saves: every sample enlarged pixel for pixel (nearest neighbour, at least 64 px a
side), rows labelled with their class, the grid captioned with who made the samples."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mtp_bench.scorers.image_artifacts import MIN_SIDE, sample_grid_png


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def flat_images(n: int, side: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``n`` one-colour grey images of distinct levels, and their labels (three classes)."""
    levels = np.linspace(0.15, 0.85, n)
    return np.stack([np.full((side, side), level) for level in levels]), np.arange(n) % 3


def grey_of(value: float) -> np.ndarray:
    """The RGB the grid draws for a grey level (matplotlib's grey colour map, as the grid uses)."""
    from matplotlib import colormaps

    return np.asarray(colormaps["gray"](value, bytes=True)[:3])


def patch(pixels: np.ndarray, value: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the largest solid patch of a grey level. Text edges may share a level with a sample here
    and there; they never form a patch."""
    from scipy import ndimage

    parts, count = ndimage.label(np.all(pixels == grey_of(value), axis=-1))
    assert count > 0
    return np.nonzero(parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1)


def block(pixels: np.ndarray, value: float) -> tuple[int, int, int]:
    """The largest solid patch of a grey level: pixel count, height and width of its bounding box."""
    rows, cols = patch(pixels, value)
    return rows.size, np.ptp(rows) + 1, np.ptp(cols) + 1


def test_each_sample_is_drawn_as_an_enlarged_block_of_its_own_level() -> None:
    images, labels = flat_images(9)
    pixels = decode(sample_grid_png(images, labels, per_class=3))
    for image in images:  # one solid square of 8 x 8 enlarged by 8: no resampling blur, no missing pixels
        assert block(pixels, image[0, 0]) == (MIN_SIDE * MIN_SIDE, MIN_SIDE, MIN_SIDE)


def test_sample_size_follows_the_image_size() -> None:
    images, labels = flat_images(3, side=5)  # 5 does not divide 64: the next whole factor, 13
    assert block(decode(sample_grid_png(images, labels, per_class=1)), images[0, 0, 0]) == (65 * 65, 65, 65)
    big, labels = flat_images(3, side=100)  # already large: drawn at its own size
    assert block(decode(sample_grid_png(big, labels, per_class=1)), big[0, 0, 0]) == (100 * 100, 100, 100)


def test_rows_are_labelled_and_the_grid_captioned() -> None:
    images, labels = flat_images(6)
    plain = decode(sample_grid_png(images, labels, per_class=2))
    named = decode(sample_grid_png(images, labels, per_class=2, class_names=["mirror_rows", "repeat_columns", "x"],
                                   title="mutor_2d seed=0"))
    assert named.shape[1] > plain.shape[1] and named.shape[0] > plain.shape[0]  # room for names and caption
    top, left = (int(where.min()) for where in patch(named, images[0, 0, 0]))  # the first sample's corner
    assert np.any(named[: top - 2] < 128)  # dark text above the samples: the caption
    ink = np.any(named[:, : left - 2] < 128, axis=-1)  # dark text left of the samples
    for image in images[:3]:  # at the height of each class row: its label
        rows, _ = patch(named, image[0, 0])
        assert ink[rows.min() : rows.max() + 1].any()


def test_colour_images_and_missing_samples() -> None:
    images = np.zeros((2, 8, 8, 3))
    images[0, ..., 0] = 1.0  # red
    images[1, ..., 2] = 1.0  # blue
    pixels = decode(sample_grid_png(images, np.array([0, 1]), per_class=3))  # two empty cells per row stay white
    assert np.all(pixels == [255, 0, 0], axis=-1).sum() == MIN_SIDE * MIN_SIDE
    assert np.all(pixels == [0, 0, 255], axis=-1).sum() == MIN_SIDE * MIN_SIDE


def test_pattern_classes_are_named_by_their_rule_and_digits_by_their_number() -> None:
    from mtp_bench.scorers.image import class_names
    from mtp_bench.tasks.image_digits import ImageDigits, ImageDigitsParams
    from mtp_bench.tasks.image_patterns import ImagePatterns, ImagePatternsParams

    rules = ["repeat_rows", "mirror_columns"]
    assert class_names(ImagePatterns(ImagePatternsParams(size=4, colours=4, rules=rules, train_size=60, test_size=12))) == rules
    assert class_names(ImageDigits(ImageDigitsParams())) is None
