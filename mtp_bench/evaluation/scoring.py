"""Scoring one split: held-out loss terms of the method (:func:`held_out_loss`) and the suite's scorers
(:func:`build_scorers`, :func:`score_split`). Checkpoint selection is :mod:`mtp_bench.trial.selection`.

Metric names: ``{split}/{name}`` with split ``val`` or ``test``; held-out loss terms keep the method API's names
(``val/loss/ntp``, ``val/acc/h2``: ``acc/h{k}`` is the accuracy of the method's predictor of the token k steps ahead,
``acc/ntp`` the next-token one), scorers add their own (``test/gsm8k/exact_match``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mtp_bench import registry
from mtp_bench.api.batches import TokenBatch
from mtp_bench.api.scorer import EvalContext
from mtp_bench.api.task import Example
from mtp_bench.models.device import autocast
from mtp_bench.suite.config import EvalConfig

HELD_OUT_SEED = 1234  # method randomness (MuToR offsets) on held-out data: the same for every evaluation


@dataclass
class SplitResult:
    metrics: dict[str, float]
    samples: dict[str, list[dict[str, Any]]]  # scorer name -> per-sample rows
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # scorer name -> extra artifacts (a PNG, ...)


@torch.no_grad()
def held_out_loss(
    module: nn.Module,
    method: Any,
    batches: list[TokenBatch],
    device: torch.device,
    precision: torch.dtype | None,
) -> dict[str, float]:
    """Every loss term and statistic of the method, as a token mean over the held-out batches."""
    was_training = module.training
    module.eval()
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for index, batch in enumerate(batches):
        generator = torch.Generator(device=device).manual_seed(HELD_OUT_SEED + index)
        model_batch = method.transform(batch.to(device), generator)
        with autocast(device, precision):
            output = method.loss(module.model, module.extra, model_batch)
        for name, value in output.sums.items():
            sums[name] = sums.get(name, 0.0) + float(value)
            counts[name] = counts.get(name, 0.0) + float(torch.as_tensor(model_batch.counts.get(name, 0)))
    module.train(was_training)
    means = {name: sums[name] / max(counts[name], 1.0) for name in sums}
    means["loss"] = sum(w * means.get(name, 0.0) for name, w in method.loss_weights().items())
    return means


def build_scorers(cfg: EvalConfig) -> list[Any]:
    return [registry.build(registry.SCORERS, entry.name, entry.params) for entry in cfg.scorers]


def score_split(context: EvalContext, scorers: list[Any], examples: list[Example], split: str) -> SplitResult:
    metrics: dict[str, float] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    files: dict[str, dict[str, bytes]] = {}
    if not examples:
        return SplitResult(metrics, samples)
    was_training = context.model.training
    context.model.eval()
    for scorer in scorers:
        result = scorer.score(context, examples)
        metrics.update({f"{split}/{scorer.name}/{key}": value for key, value in result.metrics.items()})
        samples[scorer.name] = result.samples
        if getattr(result, "files", None):
            files[scorer.name] = result.files
    context.model.train(was_training)
    return SplitResult(metrics, samples, files)
