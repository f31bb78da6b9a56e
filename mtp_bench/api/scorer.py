"""The scorer contract: :class:`Scorer` measures a trained model on examples through an :class:`EvalContext` (what
a scorer may read: the exported model, its tokenizer, the trial's task and method, decoding settings) and returns a
:class:`ScoreResult`. Also the loop every generation scorer shares (:func:`score_each`: decode once, judge each
completion, average each metric) and the per-sample row of an answer read two ways (:func:`two_way_row`).

Scorers are plugins in the ``mtp_bench.scorers`` entry-point group. They return numbers; the tracking module logs them
(scorers never import mlflow). Generations are cached in the context, so several scorers of one split decode once.

Optional class attributes (read through :func:`is_periodic`, :func:`is_selectable` and :func:`lower_is_better`, so
their defaults live in one place): ``periodic = False`` (costly: scored at the end of a trial only),
``selectable = False`` (measures speed, not quality: never picks checkpoints), ``lower_is_better`` (a set of metric
names for which lower is better).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from mtp_bench.api.task import Example


@dataclass
class ScoreResult:
    metrics: dict[str, float]  # e.g. {"exact_match": 0.41}; the harness prefixes split and scorer name
    samples: list[dict[str, Any]] = field(default_factory=list)  # one record per example (prediction, gold, ...)
    files: dict[str, bytes] = field(default_factory=dict)  # extra artifacts by file name (a PNG of samples, ...)


class EvalContext(Protocol):
    """What a scorer is given besides the examples (the harness builds it; scorers only read it)."""

    model: nn.Module  # the exported plain causal LM, in eval mode
    tokenizer: Any
    task: Any  # the trial's task object (the Task the examples were formatted from)
    method: Any  # the trial's method object, for scorers of auxiliary predictors (None outside a trial)
    extra: nn.Module | None  # the method's extra modules (heads, register embedding)
    train_model: nn.Module | None  # the model as trained (before export), for methods' own forwards
    batch_size: int
    max_new_tokens: int
    bidirectional_prompt: bool
    autocast_dtype: torch.dtype | None
    run_label: str  # who is evaluated (method label, grid values, seed): captions of artifacts such as grids

    @property
    def device(self) -> torch.device: ...

    def generate(self, examples: list[Example], max_new_tokens: int | None = None) -> list[str]:
        """Greedy completions of the examples' prompts (decoded, special tokens dropped), cached per context."""
        ...


@runtime_checkable
class Scorer(Protocol):
    """Measures a trained model on examples. ``Params`` is its settings model (a
    :class:`~mtp_bench.api.settings.Settings`)."""

    name: ClassVar[str]
    Params: ClassVar[type]
    main_metric: ClassVar[str]  # the metric used for checkpoint selection by default

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult: ...


def is_periodic(scorer: Any) -> bool:
    """Scored at every evaluation (default), or only at the end (``periodic = False``)."""
    return bool(getattr(scorer, "periodic", True))


def is_selectable(scorer: Any) -> bool:
    """May pick checkpoints (default), or never (``selectable = False``)."""
    return bool(getattr(scorer, "selectable", True))


def lower_is_better(scorer: Any) -> frozenset[str]:
    """The scorer's metrics for which lower is better (default: none)."""
    return frozenset(getattr(scorer, "lower_is_better", ()))


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
