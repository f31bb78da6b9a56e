"""Files the ``image`` scorer hands back as run artifacts (bytes; the tracking layer writes them): a PNG grid of
samples, generated code grids as ``.npy``, and FID / IS of decoded samples through torch-fidelity (VQ-code tasks
with a user-supplied decoder)."""

from __future__ import annotations

import importlib
import io
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtp_bench.errors import ImageScorerError

MIN_SIDE = 64
"""Each sample in a grid is enlarged (nearest neighbour, by a whole factor) until its shorter side has this many
pixels: an 8 x 8 image becomes 64 x 64, a 256 x 256 one stays as it is."""


def sample_grid_png(images: np.ndarray, labels: np.ndarray, per_class: int, max_classes: int = 32,
                    class_names: Sequence[str] | None = None, title: str = "") -> bytes:
    """A labelled PNG mosaic: one row per class (in label order, at most ``max_classes``), ``per_class`` samples each,
    grey images in [0, 1] (``(N, H, W)``) or colour (``(N, H, W, 3)``). Samples are enlarged nearest-neighbour by a
    whole factor (each at least :data:`MIN_SIDE` pixels) and drawn pixel for pixel, with white gaps one source pixel
    wide; each row is labelled with its class (number, then ``class_names[k]`` when given), the top with ``title``
    (who made the samples: method, grid values, seed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    images = np.clip(np.asarray(images, dtype=np.float64), 0.0, 1.0)
    classes = sorted(set(int(k) for k in labels))[:max_classes]
    h, w = images.shape[1:3]
    shape = (len(classes) * (h + 1) + 1, per_class * (w + 1) + 1, *images.shape[3:])
    mosaic = np.ones(shape)
    for row, k in enumerate(classes):
        for col, index in enumerate(np.flatnonzero(np.asarray(labels) == k)[:per_class]):
            top, left = 1 + row * (h + 1), 1 + col * (w + 1)
            mosaic[top : top + h, left : left + w] = images[index]
    scale = max(1, -(-MIN_SIDE // min(h, w)))
    mosaic = np.repeat(np.repeat(mosaic, scale, axis=0), scale, axis=1)
    names = [f"{k} {class_names[k]}" if class_names is not None and k < len(class_names) else str(k) for k in classes]
    char, line = 8, 24  # pixels per character (10-point text at 100 dpi, generous) and per text line
    margin_left = 12 + char * max((len(name) for name in names), default=1)
    margin_top = line + 8 if title else 8
    width = max(margin_left + mosaic.shape[1] + 8, 16 + char * len(title))
    height = margin_top + mosaic.shape[0] + 8
    figure = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="white")
    # figimage draws the array pixel for pixel (no resampling) at an offset counted from the bottom left
    figure.figimage(mosaic, xo=margin_left, yo=8, origin="upper", cmap="gray" if mosaic.ndim == 2 else None,
                    vmin=0.0, vmax=1.0)
    for row, name in enumerate(names):
        centre = height - margin_top - scale * (1 + row * (h + 1) + h / 2)
        figure.text((margin_left - 6) / width, centre / height, name, ha="right", va="center", fontsize=10)
    if title:
        figure.text(8 / width, (height - 6) / height, title, ha="left", va="top", fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def load_decoder(target: str) -> Any:
    """The callable named ``module:function``; a clear error when it cannot be imported."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImageScorerError(f"image scorer: decoder {target!r}: cannot import {module_name} ({exc})") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ImageScorerError(f"image scorer: decoder {target!r}: {module_name} has no callable {attribute!r}")
    return function


def decode_images(decoder: Any, codes: np.ndarray) -> np.ndarray:
    """Decoded images as ``(N, H, W, 3)`` uint8, whatever range the decoder returns ([0, 1] floats or uint8)."""
    images = np.asarray(decoder(np.asarray(codes, dtype=np.int64)))
    if images.ndim != 4 or images.shape[0] != len(codes) or images.shape[-1] != 3:
        raise ImageScorerError(f"image scorer: the decoder returned shape {images.shape}; expected (N, H, W, 3) "
                               f"for N = {len(codes)} code grids")
    if images.dtype != np.uint8:
        images = np.rint(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)
    return images


def fidelity_metrics(images: np.ndarray, reference: str | None, cuda: bool) -> dict[str, float]:
    """Inception Score (and FID when a reference is given) of uint8 images through torch-fidelity."""
    try:
        torch_fidelity = importlib.import_module("torch_fidelity")
    except ImportError:
        raise ImageScorerError("image scorer: FID/IS need torch-fidelity: pip install 'mtp-bench[fidelity]' "
                               "(or pip install torch-fidelity)") from None
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="mtp-bench-samples-") as folder:
        for index, image in enumerate(images):
            Image.fromarray(image).save(Path(folder) / f"{index:06d}.png")
        result = torch_fidelity.calculate_metrics(input1=folder, input2=reference, cuda=cuda, isc=True,
                                                  fid=reference is not None, verbose=False)
    names = {"inception_score_mean": "inception_score", "frechet_inception_distance": "fid"}
    return {names[key]: float(value) for key, value in result.items() if key in names}
