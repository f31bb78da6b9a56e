"""Running the evaluation of a trial: held-out loss terms of the method and the suite's scorers on one split.

Metric names: ``{split}/{name}`` with split ``val`` or ``test``; held-out loss terms keep the method API's names
(``val/loss/ntp``, ``val/acc/h2``), scorers add their own (``test/gsm8k/exact_match``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mtp_bench import registry
from mtp_bench.api import TokenBatch
from mtp_bench.data.tasks import Example
from mtp_bench.evaluation.api import EvalContext
from mtp_bench.suite.models import EvalConfig
from mtp_bench.train.optim import autocast

HELD_OUT_SEED = 1234  # method randomness (MuToR offsets) on held-out data: the same for every evaluation


@dataclass
class SplitResult:
    metrics: dict[str, float]
    samples: dict[str, list[dict[str, Any]]]  # scorer name -> per-sample rows


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
    weights: dict[str, float] = {}
    for index, batch in enumerate(batches):
        generator = torch.Generator(device=device).manual_seed(HELD_OUT_SEED + index)
        model_batch = method.transform(batch.to(device), generator)
        with autocast(device, precision):
            output = method.loss(module.model, module.extra, model_batch)
        weights = output.weights
        for name, value in output.sums.items():
            sums[name] = sums.get(name, 0.0) + float(value)
            counts[name] = counts.get(name, 0.0) + float(torch.as_tensor(model_batch.counts.get(name, 0)))
    module.train(was_training)
    means = {name: sums[name] / max(counts[name], 1.0) for name in sums}
    means["loss"] = sum(w * means.get(name, 0.0) for name, w in weights.items())
    return means


def build_scorers(cfg: EvalConfig) -> list[Any]:
    scorers = []
    for entry in cfg.scorers:
        cls = registry.load_scorer(entry.name)
        scorers.append(cls(cls.Params.model_validate(entry.params)))
    return scorers


def score_split(context: EvalContext, scorers: list[Any], examples: list[Example], split: str) -> SplitResult:
    metrics: dict[str, float] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    if not examples:
        return SplitResult(metrics, samples)
    was_training = context.model.training
    context.model.eval()
    for scorer in scorers:
        result = scorer.score(context, examples)
        metrics.update({f"{split}/{scorer.name}/{key}": value for key, value in result.metrics.items()})
        samples[scorer.name] = result.samples
    context.model.train(was_training)
    return SplitResult(metrics, samples)


def selection_metric(cfg: EvalConfig, scorers: list[Any]) -> tuple[str, bool]:
    """(metric name without split prefix, higher is better) used to choose the best checkpoint."""
    if cfg.select_metric:
        name = cfg.select_metric
    elif scorers:
        name = f"{scorers[0].name}/{scorers[0].main_metric}"
    else:
        name = "loss"
    higher_is_better = not (name == "loss" or name.startswith("loss/"))
    return name, higher_is_better
