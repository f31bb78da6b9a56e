"""Optimiser and learning-rate schedule: the pieces of the loop that are not the loop."""

from __future__ import annotations

import math

import torch
from torch import nn

from mtp_bench.suite.config import TrainConfig


def build_optimizer(parameters: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in parameters if p.ndim >= 2]
    no_decay = [p for p in parameters if p.ndim < 2]  # norms and biases are not decayed
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas)


def warmup_steps(cfg: TrainConfig, total_steps: int) -> int:
    if cfg.warmup_steps is not None:
        return min(cfg.warmup_steps, total_steps)
    return math.ceil(cfg.warmup_ratio * total_steps)


def lr_multiplier(step: int, *, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate for optimiser step ``step`` (0-based): linear warm-up, then decay."""
    if warmup > 0 and step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    warmup = warmup_steps(cfg, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total=total_steps, warmup=warmup, schedule=cfg.schedule)
    )
