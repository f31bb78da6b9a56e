"""The small classifier whose features and class probabilities the ``image`` scorer measures samples with.

Trained once per task configuration on the task's real training images, deterministically (fixed seed, fixed
schedule, one thread), then cached in memory and on disk (``$MTP_BENCH_CACHE/image_classifiers/``), so every trial
and every evaluation of a task uses the same classifier. Two 3x3 convolutions and a 64-unit feature layer: enough to
tell 8x8 digits apart (about 97% on the held-out split) and to see symmetries on the synthetic patterns.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtp_bench.cache import cache_root
from mtp_bench.scorers.image_metrics import gaussian

VERSION = 1  # bump when the architecture or the training recipe changes (the cache key includes it)
FEATURES = 64


class PixelClassifier(nn.Module):
    def __init__(self, height: int, width: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(32 * height * width, FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, num_classes)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(pixels[:, None])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixels))


@dataclass
class TrainedClassifier:
    model: PixelClassifier
    accuracy: float  # on the task's real test images
    train_mu: np.ndarray  # feature Gaussian of the real training images (the Fréchet reference)
    train_sigma: np.ndarray

    @torch.no_grad()
    def measure(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features and class probabilities of ``(N, H, W)`` grey images in [0, 1]."""
        x = torch.as_tensor(np.asarray(pixels), dtype=torch.float32)
        features = self.model.features(x)
        return features.numpy().astype(np.float64), torch.softmax(self.model.head(features), -1).numpy()


def train_classifier(pixels: np.ndarray, labels: np.ndarray, num_classes: int, *, epochs: int = 40,
                     batch_size: int = 64, seed: int = 0) -> PixelClassifier:
    """Adam on shuffled mini-batches, everything drawn from ``seed``; single-threaded so it repeats exactly."""
    x = torch.as_tensor(np.asarray(pixels), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = PixelClassifier(x.shape[1], x.shape[2], num_classes)
        generator = torch.Generator().manual_seed(seed)
        optimiser = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), batch_size):
                index = order[start : start + batch_size]
                loss = nn.functional.cross_entropy(model(x[index]), y[index])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


_MEMO: dict[str, TrainedClassifier] = {}


def classifier_for(key: dict[str, Any], load_images: Any, num_classes: int) -> TrainedClassifier:
    """The classifier of a task configuration ``key`` (JSON-safe): from memory, the disk cache, or trained now from
    ``load_images() -> (train pixels, train labels, test pixels, test labels)``."""
    digest = hashlib.sha256(json.dumps({"key": key, "version": VERSION}, sort_keys=True).encode()).hexdigest()[:16]
    if digest in _MEMO:
        return _MEMO[digest]
    path = cache_root() / "image_classifiers" / f"{digest}.pt"
    train_x, train_y, test_x, test_y = load_images()
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = PixelClassifier(train_x.shape[1], train_x.shape[2], num_classes)
        model.load_state_dict(saved["state"])
        accuracy = float(saved["accuracy"])
        model.eval()
    else:
        model = train_classifier(train_x, train_y, num_classes)
        with torch.no_grad():
            predicted = model(torch.as_tensor(test_x, dtype=torch.float32)).argmax(-1).numpy()
        accuracy = float((predicted == np.asarray(test_y)).mean()) if len(test_y) else float("nan")
        _save(path, {"state": model.state_dict(), "accuracy": accuracy})
    trained = TrainedClassifier(model, accuracy, np.zeros(0), np.zeros(0))
    trained.train_mu, trained.train_sigma = gaussian(trained.measure(train_x)[0])
    _MEMO[digest] = trained
    return trained


def _save(path: Path, payload: dict[str, Any]) -> None:
    """Write then rename, so that concurrent trials never read a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=".staging-"))
    try:
        torch.save(payload, staging / "model.pt")
        (staging / "model.pt").replace(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
