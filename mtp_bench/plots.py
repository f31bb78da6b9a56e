"""Figures for ``mtp-bench compare``: accuracy per method with confidence intervals, and the periodic metric over
training steps and training FLOPs. Built on ``matplotlib.figure.Figure`` (no pyplot state, no display needed)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

CHECKPOINT_STYLE = {  # label and colour of each reported checkpoint
    "last": ("last checkpoint", "#4C72B0"),
    "best": ("best on validation", "#55A868"),
    "best_on_test": ("best on TEST split (optimistic)", "#C44E52"),
}


@dataclass
class Bar:
    group: str  # method label (and grid cell)
    checkpoint: str  # "last", "best" or "best_on_test"
    mean: float
    low: float  # NaN without an interval (one seed)
    high: float
    values: list[float] = field(default_factory=list)  # one per seed, drawn as dots


@dataclass
class Curve:
    group: str
    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray | None = None  # t-interval band across seeds (None with one seed)
    high: np.ndarray | None = None
    flops: np.ndarray | None = None  # cumulative training FLOPs at each step, when known


def accuracy_figure(bars: list[Bar], metric: str, title: str) -> Figure:
    """Grouped bars: one group per method, one bar per checkpoint, 95% CI whiskers and per-seed dots."""
    groups = list(dict.fromkeys(bar.group for bar in bars))
    checkpoints = [c for c in CHECKPOINT_STYLE if any(bar.checkpoint == c for bar in bars)]
    figure = Figure(figsize=(max(5.0, 1.4 * len(groups) * max(len(checkpoints), 1) + 1.5), 4.2))
    axes = figure.add_subplot()
    width = 0.8 / max(len(checkpoints), 1)
    for offset, checkpoint in enumerate(checkpoints):
        label, colour = CHECKPOINT_STYLE[checkpoint]
        for bar in (b for b in bars if b.checkpoint == checkpoint):
            x = groups.index(bar.group) + (offset - (len(checkpoints) - 1) / 2) * width
            axes.bar(x, bar.mean, width * 0.9, color=colour, alpha=0.85,
                     label=label if bar is _first(bars, checkpoint) else None)
            if not (math.isnan(bar.low) or math.isnan(bar.high)):
                axes.errorbar(x, bar.mean, yerr=[[bar.mean - bar.low], [bar.high - bar.mean]], color="black",
                              capsize=4, linewidth=1)
            if bar.values:
                axes.scatter([x] * len(bar.values), bar.values, color="black", s=10, zorder=3)
    axes.set_xticks(range(len(groups)), groups, rotation=20 if len(groups) > 3 else 0, ha="right"
                    if len(groups) > 3 else "center")
    axes.set_ylabel(metric)
    axes.set_title(title + "\nmean over seeds, 95% t-interval; dots: seeds", fontsize=10)
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def _first(bars: list[Bar], checkpoint: str) -> Bar:
    return next(bar for bar in bars if bar.checkpoint == checkpoint)


def curves_figure(curves: list[Curve], metric: str, title: str) -> Figure:
    """The periodic metric against optimiser steps and, when every curve knows it, against training FLOPs (the
    compute each method spent: methods that insert tokens do more work per step)."""
    with_flops = bool(curves) and all(c.flops is not None for c in curves)
    figure = Figure(figsize=(11.0 if with_flops else 6.0, 4.2))
    panels = figure.subplots(1, 2 if with_flops else 1, squeeze=False)[0]
    for axes, x_name in zip(panels, ("steps", "flops")):
        for curve in curves:
            x = curve.steps if x_name == "steps" else curve.flops
            (line,) = axes.plot(x, curve.mean, marker="o", markersize=3, label=curve.group)
            if curve.low is not None and curve.high is not None:
                axes.fill_between(x, curve.low, curve.high, color=line.get_color(), alpha=0.15)
        axes.set_xlabel("optimiser step" if x_name == "steps" else "training FLOPs (6 x params x tokens processed)")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(title + "\nmean over seeds; band: 95% t-interval", fontsize=10)
    figure.tight_layout()
    return figure
