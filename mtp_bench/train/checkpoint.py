"""Checkpoints: what an interrupted trial needs to continue exactly where it stopped.

Only trainable tensors are saved (all weights in full fine-tuning; adapters and method modules in LoRA): the frozen
rest is rebuilt identically from the model source and the seed. A checkpoint is written to a staging folder and
renamed into place, so a crash mid-write never leaves a half checkpoint behind. Tensors are saved whole whatever the
strategy (FSDP's slices are gathered, see :mod:`mtp_bench.train.sharding`), so any strategy resumes any checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtp_bench.train.sharding import like, whole

STATE_FILE = "trainable.pt"
TRAINER_FILE = "trainer.pt"
META_FILE = "meta.json"


def trainable_state(module: nn.Module, keep: bool = True) -> dict[str, torch.Tensor]:
    """CPU copies of the trainable tensors, whole. Sharded ones are gathered, so every rank calls this; only where
    ``keep`` (rank 0) are copies made, elsewhere the result is empty."""
    state = {name: whole(p, keep) for name, p in module.named_parameters() if p.requires_grad}
    return state if keep else {}


def load_trainable_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(module.named_parameters())
    missing = [name for name in state if name not in params]
    if missing:
        raise KeyError(f"checkpoint holds parameters this model lacks: {missing[:5]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(like(value, params[name]))


def save_checkpoint(directory: Path, trainable: dict[str, torch.Tensor], trainer_state: dict[str, Any],
                    meta: dict[str, Any]) -> None:
    """Write ``trainable`` (from :func:`trainable_state`), the loop's state and ``meta`` (rank 0 only)."""
    directory = Path(directory)
    staging = directory.with_name(directory.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch.save(trainable, staging / STATE_FILE)
    torch.save({**trainer_state, "torch_rng": torch.get_rng_state()}, staging / TRAINER_FILE)
    (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    staging.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def has_checkpoint(directory: Path) -> bool:
    return (Path(directory) / META_FILE).is_file()


def load_checkpoint(directory: Path, module: nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore trainable tensors into ``module``; return (trainer state, meta). Every rank of a trial reads the whole
    checkpoint; memory-mapped, ranks on one machine share its pages instead of holding a copy each."""
    directory = Path(directory)
    load_trainable_state(module, torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True, mmap=True))
    trainer_state = torch.load(directory / TRAINER_FILE, map_location="cpu", weights_only=False, mmap=True)
    torch.set_rng_state(trainer_state.pop("torch_rng"))
    return trainer_state, json.loads((directory / META_FILE).read_text())
