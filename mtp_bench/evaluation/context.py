"""The scorer interface: scorers are plugins in the ``mtp_bench.scorers`` entry-point group. Also the loop every
generation scorer shares (:func:`score_each`: decode once, judge each completion, average each metric).

A scorer gets an :class:`EvalContext` (the exported model, its tokenizer, the method and its extra modules for
scorers that read auxiliary predictors, decoding settings) and a list of examples; it returns metrics and per-sample
records. Generations are cached in the context, so several scorers of one split decode once.
Scorers return numbers; the tracking module logs them (scorers never import mlflow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from mtp_bench.data.pipeline import encode_prompt
from mtp_bench.data.tasks import Example
from mtp_bench.evaluation.generate import greedy_generate


@dataclass
class ScoreResult:
    metrics: dict[str, float]  # e.g. {"exact_match": 0.41}; the harness prefixes split and scorer name
    samples: list[dict[str, Any]] = field(default_factory=list)  # one record per example (prediction, gold, ...)
    files: dict[str, bytes] = field(default_factory=dict)  # extra artifacts by file name (a PNG of samples, ...)


@dataclass
class EvalContext:
    model: nn.Module  # the exported plain causal LM, in eval mode
    tokenizer: Any
    method: Any = None  # the trial's method object, for scorers of auxiliary predictors
    extra: nn.Module | None = None  # the method's extra modules (heads, register embedding)
    train_model: nn.Module | None = None  # the model as trained (before export), for methods' own forwards
    batch_size: int = 16
    max_new_tokens: int = 512
    bidirectional_prompt: bool = False
    autocast_dtype: torch.dtype | None = None
    run_label: str = ""  # who is evaluated (method label, grid values, seed): captions of artifacts such as grids
    _generations: dict[tuple[str, int], str] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, examples: list[Example], max_new_tokens: int | None = None) -> list[str]:
        """Greedy completions of the examples' prompts (decoded, special tokens dropped), cached per context."""
        budget = max_new_tokens or self.max_new_tokens
        missing = [e for e in examples if (e.prompt, budget) not in self._generations]
        unique = list({e.prompt: e for e in missing}.values())
        if unique:
            prompts = [encode_prompt(self.tokenizer, e.prompt) for e in unique]
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                outputs = greedy_generate(
                    self.model,
                    prompts,
                    eos_id=self.tokenizer.eos_token_id,
                    pad_id=self.tokenizer.pad_token_id,
                    max_new_tokens=budget,
                    batch_size=self.batch_size,
                    bidirectional_prompt=self.bidirectional_prompt,
                )
            for example, tokens in zip(unique, outputs):
                self._generations[(example.prompt, budget)] = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return [self._generations[(e.prompt, budget)] for e in examples]


@runtime_checkable
class Scorer(Protocol):
    """Measures a trained model on examples. ``Params`` is a pydantic model (``extra="forbid"``)."""

    name: ClassVar[str]
    Params: ClassVar[type]
    main_metric: ClassVar[str]  # the metric used for checkpoint selection by default

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult: ...


def mean_scores(samples: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, float]:
    """Each metric as the mean of its per-sample ``scores`` (0 when there are no samples)."""
    n = max(len(samples), 1)
    return {name: sum(float(row["scores"][name]) for row in samples) / n for name in names}


def score_each(context: EvalContext, examples: list[Example], max_new_tokens: int | None,
               judge: Callable[[int, Example, str], dict[str, Any]], metrics: tuple[str, ...]) -> ScoreResult:
    """Greedy completions of the examples (cached in the context), one per-sample row each from ``judge(index,
    example, completion)`` (``index``, ``correct`` and a ``scores`` entry per metric), and each metric as the mean
    of its per-sample scores."""
    completions = context.generate(examples, max_new_tokens)
    samples = [judge(index, example, completion)
               for index, (example, completion) in enumerate(zip(examples, completions))]
    return ScoreResult(metrics=mean_scores(samples, metrics), samples=samples)


def two_way_row(index: int, example: Example, completion: str, gold: str | None, read: tuple[str | None, str | None],
                metrics: tuple[str, str]) -> dict[str, Any]:
    """The per-sample row of a scorer that reads one answer two ways, strict then flexible (GSM8K's number,
    AQuA's letter): ``correct`` is the strict verdict, ``scores`` holds both under ``metrics`` (strict name first).
    A missing gold (None) matches nothing."""
    strict, flexible = read
    strict_ok, flexible_ok = gold is not None and strict == gold, gold is not None and flexible == gold
    return {
        "index": index,
        "question": example.record.get("question", example.prompt),
        "completion": completion,
        "gold": gold,
        "prediction": strict,
        "prediction_flexible": flexible,
        "correct": strict_ok,
        "scores": {metrics[0]: strict_ok, metrics[1]: flexible_ok},
    }
