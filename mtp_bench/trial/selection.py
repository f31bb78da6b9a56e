"""Checkpoint selection, the one place it is decided: which metric selects (:func:`selection_metric`), which splits
periodic evaluation scores and which one selects (:func:`plan_selection`), the best weights so far (``best.pt``,
kept by :class:`Selection` while training), and the checkpoint reported at the end (:meth:`Selection.selected`).

At the end of a trial the test metrics get the checkpoint as a prefix: ``last/``, ``best/`` (best on validation) or
``best_on_test/`` (selected on the test split, as the MuToR paper did for GSM8K: optimistic, and labelled so wherever
it is shown).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from mtp_bench.api.scorer import is_selectable, lower_is_better
from mtp_bench.errors import SelectionError
from mtp_bench.suite.config import EvalConfig

SELECTED_PREFIX = {"validation": "best", "test": "best_on_test"}
SELECTION_LABEL = {
    "best": "best on validation",
    "best_on_test": "best on the TEST split (paper protocol; optimistic)",
    "last": "last checkpoint",
}


def selection_metric(cfg: EvalConfig, scorers: list[Any]) -> tuple[str, bool]:
    """(metric name without split prefix, higher is better) used to choose the best checkpoint."""
    if cfg.select_metric:
        name = cfg.select_metric
    elif selectable := [s for s in scorers if is_selectable(s)]:
        # a scorer that measures decoding speed, not quality (``selectable = False``), never picks checkpoints
        name = f"{selectable[0].name}/{selectable[0].main_metric}"
    else:
        name = "loss"
    higher_is_better = not (name == "loss" or name.startswith("loss/"))
    # a scorer names its lower-is-better metrics (``lower_is_better``, e.g. the image scorer's Fréchet distance)
    for scorer in scorers:
        if name.partition("/")[::2] in {(scorer.name, m) for m in lower_is_better(scorer)}:
            higher_is_better = False
    return name, higher_is_better


@dataclass(frozen=True)
class SelectionPlan:
    """How a trial picks its reported checkpoint: which splits periodic evaluation scores, which one selects."""

    metric: str  # without split prefix, e.g. "gsm8k/exact_match" or "loss"
    higher_is_better: bool
    periodic_splits: tuple[str, ...]  # "val" and/or "test"
    split: Literal["val", "test"] | None  # the split that selects; None: only the last checkpoint is reported
    prefix: str | None  # "best" or "best_on_test" (metric prefix of the selected checkpoint)
    note: str  # why there is no selection, when there is none

    @property
    def label(self) -> str:
        return SELECTION_LABEL[self.prefix or "last"]


def plan_selection(cfg: EvalConfig, metric: str, higher_is_better: bool, has_validation: bool) -> SelectionPlan:
    """Selection on validation needs a validation split (``data.validation_size``); on test it scores the test split
    at every evaluation. Periodic evaluation always scores the validation split when there is one (learning curves),
    else the test split."""
    splits = ["val"] if has_validation else ["test"]
    split: Literal["val", "test"] | None = None
    note = ""
    measured = bool(cfg.scorers) or cfg.held_out_loss or cfg.select_metric is not None
    if cfg.select_on == "last":
        note = "evaluation.select_on is last"
    elif not measured:
        note = "nothing is measured periodically (no scorers, held_out_loss off)"
    elif cfg.select_on == "test":
        split = "test"
        if "test" not in splits:
            splits.append("test")
    elif has_validation:
        split = "val"
    else:
        note = "no validation split (set data.validation_size to select on validation)"
    prefix = SELECTED_PREFIX[cfg.select_on] if split is not None else None
    return SelectionPlan(metric, higher_is_better, tuple(splits), split, prefix, note)


def selection_value(plan: SelectionPlan, metrics: dict[str, float]) -> float:
    """The selection metric among one periodic evaluation's metrics; a clear error when it is not there."""
    key = f"{plan.split}/{plan.metric}"
    if key not in metrics:
        prefix = f"{plan.split}/"
        available = sorted(name[len(prefix):] for name in metrics if name.startswith(prefix))
        raise SelectionError(f"evaluation.select_metric {plan.metric!r} is not measured on the {plan.split} split; "
                             f"available: {', '.join(available) or 'none'}")
    return float(metrics[key])


def improves(value: float, best: float | None, higher_is_better: bool) -> bool:
    """Strictly better than the best so far (ties keep the earlier checkpoint; NaN never wins)."""
    if math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value > best if higher_is_better else value < best


def save_best(path: Path, state: dict[str, torch.Tensor], step: int, value: float) -> None:
    """Write the selected weights with the step and value they were selected at (staged, then renamed, so that a
    crash never leaves a torn file)."""
    staging = path.with_name(path.name + ".staging")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": step, "value": value, "state": state}, staging)
    staging.replace(path)


@dataclass
class SelectedCheckpoint:
    prefix: str  # "best" or "best_on_test"
    step: int
    value: float
    state: dict[str, torch.Tensor]


def load_selected(plan: SelectionPlan, path: Path, recorded: dict[str, Any]) -> SelectedCheckpoint | None:
    """The checkpoint selection picked, when selection is on and one was saved. ``recorded`` is the trial's own
    ``{"step", "value"}``; the step stored with the weights wins (they differ only after a crash between the two
    writes, and the weights are what gets scored)."""
    if plan.prefix is None or recorded.get("step") is None or not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if "state" not in saved:  # written before steps were stored beside the weights
        saved = {"state": saved, "step": recorded["step"], "value": recorded["value"]}
    return SelectedCheckpoint(plan.prefix, int(saved["step"]), float(saved["value"]), saved["state"])


def lm_eval_targets(cfg: EvalConfig, selected: str | None) -> set[str]:
    """Checkpoint prefixes lm-eval scores: ``last`` and/or the selected one (see ``LmEvalConfig.checkpoints``)."""
    if not cfg.lm_eval.tasks:
        return set()
    if cfg.lm_eval.checkpoints == "last" or selected is None:
        return {"last"}
    if cfg.lm_eval.checkpoints == "selected":
        return {selected}
    return {"last", selected}


class Selection:
    """One trial's checkpoint selection, planned once from its evaluation settings and scorers: the plan, the best
    value and step so far (also kept in every checkpoint's meta, so a resumed trial goes on selecting), and the
    weights of the best in ``path`` (``best.pt``)."""

    def __init__(self, cfg: EvalConfig, scorers: list[Any], has_validation: bool, path: Path):
        self.plan = plan_selection(cfg, *selection_metric(cfg, scorers), has_validation)
        self.path = path
        self.best: dict[str, Any] = {"value": None, "step": None}

    def offer(self, step: int, metrics: dict[str, float], weights: Callable[[], dict[str, torch.Tensor]]) -> None:
        """After a periodic evaluation: keep the weights (``weights()``) when the selection metric improves."""
        if self.plan.split is None:
            return
        value = selection_value(self.plan, metrics)
        if improves(value, self.best["value"], self.plan.higher_is_better):
            save_best(self.path, weights(), step, value)
            self.best = {"value": value, "step": step}

    def selected(self) -> SelectedCheckpoint | None:
        """The checkpoint to report beside the last one (None: no selection, or nothing saved)."""
        return load_selected(self.plan, self.path, self.best)
