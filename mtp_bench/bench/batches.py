"""GSM8K-shaped inputs for the cost benchmarks, built through the real trial path: the suite document, its trials,
fixed batches every variant shares, and the shared loop over them."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from mtp_bench.api.batches import TokenBatch
from mtp_bench.bench.context import REPO, Settings
from mtp_bench.bench.sizes import Sizes


def gsm8k_dir() -> Path:
    """``$MTP_BENCH_GSM8K_DIR``, else ``../shared/data/gsm8k`` beside the repository or the working directory."""
    from mtp_bench.errors import DataError

    candidates = [os.environ.get("MTP_BENCH_GSM8K_DIR"), REPO.parent / "shared" / "data" / "gsm8k",
                  Path("../shared/data/gsm8k")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train.jsonl").is_file() and (Path(candidate) / "test.jsonl").is_file():
            return Path(candidate).resolve()
    raise DataError("GSM8K not found: set MTP_BENCH_GSM8K_DIR to a folder with train.jsonl and test.jsonl")


def trials(document: dict[str, Any]) -> list[Any]:
    """Trials of a suite document, validated and expanded exactly as ``mtp-bench run`` does."""
    from mtp_bench.suite import expand_grid
    from mtp_bench.suite.load import validate_suite

    return expand_grid(validate_suite(document))


def gsm8k_suite(settings: Settings, methods: list[dict[str, Any]], *, bidirectional: bool = False,
                lr: float = 1e-4) -> dict[str, Any]:
    """A GSM8K suite document: the paper's prompt format, the preset's tokenizer trained on GSM8K, AdamW, clipping
    1.0, no warm-up (a linear decay from the first step), the run's device and precision."""
    sizes = settings.sizes
    data: dict[str, Any] = {"task": "gsm8k", "params": {"source": "local", "path": str(gsm8k_dir())}}
    if sizes.train_limit:
        data["train_limit"] = sizes.train_limit
    return {
        "name": "bench-gsm8k",
        "model": dict(sizes.model),
        "data": data,
        "methods": methods,
        "baseline": methods[0].get("label") or methods[0]["name"],
        "bidirectional_prompt": bidirectional,
        "train": {"max_steps": 100_000, "lr": lr, "batch_size": sizes.batch_size, "max_length": sizes.max_length,
                  "warmup_ratio": 0.0, "clip_grad_norm": 1.0, "device": settings.device, "progress": False,
                  "checkpoint": False},
    }


def prepared_ntp(settings: Settings) -> Any:
    """NTP on the GSM8K suite, prepared exactly as a trial prepares it (the trial is its ``.trial``)."""
    from mtp_bench.trial import prepare

    return prepare(trials(gsm8k_suite(settings, [{"name": "ntp"}]))[0])


def batch_indices(n_items: int, sizes: Sizes, seed: int = 0) -> list[list[int]]:
    """Fixed training examples for every batch: the same for every variant that tokenized the same data."""
    rng = random.Random(seed)
    chosen = rng.sample(range(n_items), min(n_items, sizes.batch_size * sizes.n_batches))
    return [chosen[i : i + sizes.batch_size] for i in range(0, len(chosen), sizes.batch_size)]


def make_batches(prepared: Any, indices: list[list[int]]) -> list[TokenBatch]:
    """The batches of ``indices``, collated as the trial collates its training batches."""
    from mtp_bench.trial.build import collate_items

    items = prepared.train_data.items
    return [collate_items(prepared.trial, prepared.tokenizer, [items[i] for i in group]) for group in indices]


def trainer_for(prepared: Any, batches: list[TokenBatch]) -> Any:
    """The shared loop over ``batches`` (step s trains on batch s mod n), as a trial builds it."""
    from mtp_bench.train.loop import Trainer

    return Trainer(prepared.module, prepared.method, prepared.trial.train, total_steps=prepared.trial.train.max_steps,
                   device=prepared.device, precision=prepared.precision, seed=prepared.trial.seed,
                   batches_for_step=lambda step: [batches[step % len(batches)]], eval_steps=set())
