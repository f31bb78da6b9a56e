"""Shared fixtures and hooks: local data, a throwaway store, an isolated cache, the bad-input tests' suite file.
Shared helpers (models, batches, the suite builder, ...) are in ``helpers.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import find_gsm8k, write_own_store_suite


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist (-n N) each worker gets one thread: N workers of 2 threads on 2 cores would spin-wait.
    threads = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
    torch.set_num_threads(min(threads, torch.get_num_threads()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Modules with a slow test first, end-to-end before unit (a stable sort keeps each module's tests together):
    # under -n the longest modules start early, and the short ones fill in at the end instead of one process
    # finishing Ray runs alone.
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.path not in slow, "e2e" not in item.path.parts))


@pytest.fixture
def gsm8k_dir() -> Path:
    """The local GSM8K copy: $MTP_BENCH_GSM8K_DIR, else ../shared/data/gsm8k beside the repository."""
    return find_gsm8k()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite MLflow store; MLFLOW_TRACKING_URI points at it so suites under test use it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokenizer cache shared by the session's tests but never the user's."""
    monkeypatch.setenv("MTP_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def suite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A valid suite that validates in milliseconds (synthetic addition, the smallest preset, two steps) as
    ``tmp_path/suite.yaml``, run from ``tmp_path`` with the suite's own tracking URI: the bad-input tests' base."""
    return write_own_store_suite(tmp_path, monkeypatch)
