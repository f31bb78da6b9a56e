"""Where mtp-bench keeps what it builds once and reuses (trained tokenizers, converted GGUF checkpoints, image
classifiers, the empty MLflow store new stores are copied from). Imports nothing heavy, so suite checks can look into
the cache without loading transformers; a bottom-layer module, so every layer may use it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$MTP_BENCH_CACHE`` or ``~/.cache/mtp-bench``."""
    return Path(os.environ.get("MTP_BENCH_CACHE") or Path.home() / ".cache" / "mtp-bench")
