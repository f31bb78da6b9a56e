"""Checkpoints: what an interrupted trial needs to continue exactly where it stopped.

Only trainable tensors are saved (all weights in full fine-tuning; adapters and method modules in LoRA): the frozen
rest is rebuilt identically from the model source and the seed. A checkpoint is written to a staging folder and
renamed into place, so a crash mid-write never leaves a half checkpoint behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

STATE_FILE = "trainable.pt"
TRAINER_FILE = "trainer.pt"
META_FILE = "meta.json"


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in module.named_parameters() if p.requires_grad}


def load_trainable_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(module.named_parameters())
    missing = [name for name in state if name not in params]
    if missing:
        raise KeyError(f"checkpoint holds parameters this model lacks: {missing[:5]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def save_checkpoint(directory: Path, module: nn.Module, trainer_state: dict[str, Any], meta: dict[str, Any]) -> None:
    directory = Path(directory)
    staging = directory.with_name(directory.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch.save(trainable_state(module), staging / STATE_FILE)
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
    """Restore trainable tensors into ``module``; return (trainer state, meta)."""
    directory = Path(directory)
    load_trainable_state(module, torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True))
    trainer_state = torch.load(directory / TRAINER_FILE, map_location="cpu", weights_only=False)
    torch.set_rng_state(trainer_state.pop("torch_rng"))
    return trainer_state, json.loads((directory / META_FILE).read_text())
