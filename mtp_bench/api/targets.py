"""Targets k steps ahead, their counts, and summed losses and accuracies over the positions that have a target."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from mtp_bench.api.batches import IGNORE_INDEX


def shifted_targets(labels: Tensor) -> Tensor:
    """Targets for next-token prediction: position t predicts labels[t + 1]; the last position predicts nothing."""
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def future_targets(labels: Tensor, k: int) -> Tensor:
    """Targets k steps ahead: position t predicts labels[t + k] (``IGNORE_INDEX`` past the end)."""
    return F.pad(labels[:, k:], (0, k), value=IGNORE_INDEX)


def count_targets(targets: Tensor) -> Tensor:
    return (targets != IGNORE_INDEX).sum()


def cross_entropy_sum(logits: Tensor, targets: Tensor) -> Tensor:
    """Summed cross-entropy in fp32 over the positions whose target is not ``IGNORE_INDEX``."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def correct_sum(logits: Tensor, targets: Tensor) -> Tensor:
    """Number of positions whose arg-max prediction equals the target (ignored positions excluded)."""
    valid = targets != IGNORE_INDEX
    return ((logits.detach().argmax(-1) == targets) & valid).sum()


def target_loss(logits_of: Callable[[Tensor], Tensor], hidden: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(summed cross-entropy, number correct) of a head over the positions that have a target. The head
    (``logits_of``: hidden [N, d] -> logits [N, V]) runs on those positions only: no full-vocabulary logits for
    prompt or padding positions (at a 32K vocabulary the LM head is a fifth of a small model's step)."""
    valid = targets != IGNORE_INDEX
    logits, chosen = logits_of(hidden[valid]), targets[valid]
    correct = (logits.detach().argmax(-1) == chosen).sum()
    return F.cross_entropy(logits.float(), chosen, reduction="sum"), correct
