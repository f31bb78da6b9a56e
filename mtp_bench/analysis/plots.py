"""Figures for ``mtp-bench compare``: the headline metric per method (mean, 95% t-interval over seeds clipped to the
metric's range, a dot per seed) and the periodic metric over optimiser steps and training FLOPs. No error bar or
band below 3 seeds (``MIN_SEEDS_INTERVAL``), whatever interval a caller passes: one or two seeds are drawn as what
they are, a dot or a thin line per seed. One panel per grid cell, wrapped into rows, so a figure
keeps a readable size whatever the grid; human axis names; bounded metrics on [0, 1]; legends outside the data.
Built on ``matplotlib.figure.Figure`` (no pyplot state, no display needed)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

from mtp_bench.analysis.names import bounds, human_label
from mtp_bench.analysis.stats import MIN_SEEDS_INTERVAL

CHECKPOINT_STYLE = {  # label, colour and marker of each reported checkpoint
    "last": ("last checkpoint", "#4C72B0", "o"),
    "best": ("best on validation", "#55A868", "s"),
    "best_on_test": ("best on TEST split (optimistic)", "#C44E52", "D"),
}
PANELS_PER_ROW = 4
PANEL_SIZE = (3.4, 2.9)  # inches per panel
MAX_PANELS = 24  # beyond this, the tables say it better
MARGIN = 0.03  # of a bounded axis's range, beyond each bound
MIN_WIDTH = 6.5  # inches: room for the title and the legend under the panels


@dataclass
class Point:
    """One method's headline value at one checkpoint: mean, interval (NaN without one) and per-seed values."""

    method: str
    cell: str
    checkpoint: str  # "last", "best" or "best_on_test"
    mean: float
    low: float
    high: float
    values: list[float] = field(default_factory=list)


@dataclass
class Curve:
    group: str  # method label (and grid cell)
    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray | None = None  # interval band over seeds (None without one)
    high: np.ndarray | None = None
    flops: np.ndarray | None = None  # cumulative training FLOPs at each step, when known
    method: str = ""
    cell: str = ""
    seeds: np.ndarray | None = None  # [seeds, steps]


def _panels(count: int) -> tuple[Figure, list]:
    columns = min(PANELS_PER_ROW, max(count, 1))
    rows = math.ceil(max(count, 1) / columns)
    figure = Figure(figsize=(max(MIN_WIDTH, PANEL_SIZE[0] * columns + 0.6), PANEL_SIZE[1] * rows + 1.4),
                    layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, list(axes[:count])


def _limits(axes: object, metric: str) -> None:
    """A bounded metric's axis spans its range, with a small margin so values at 0 or 1 stay visible."""
    if bounds(metric) is not None and math.isfinite(bounds(metric)[1]):
        low, high = bounds(metric)
        margin = MARGIN * (high - low)
        axes.set_ylim(low - margin, high + margin)
        axes.set_yticks(np.linspace(low, high, 6))


def accuracy_figure(points: list[Point], metric: str, title: str) -> Figure:
    """Per grid cell a panel; in it one column per method, one marker per checkpoint: the mean, its interval over
    seeds as a line (none for one or two seeds) and each seed as a dot."""
    cells = list(dict.fromkeys(p.cell for p in points))[:MAX_PANELS]
    checkpoints = [c for c in CHECKPOINT_STYLE if any(p.checkpoint == c for p in points)]
    figure, panels = _panels(len(cells))
    width = 0.7 / max(len(checkpoints), 1)
    for index, (axes, cell) in enumerate(zip(panels, cells)):
        mine = [p for p in points if p.cell == cell]
        methods = list(dict.fromkeys(p.method for p in mine))
        for offset, checkpoint in enumerate(checkpoints):
            label, colour, marker = CHECKPOINT_STYLE[checkpoint]
            for point in (p for p in mine if p.checkpoint == checkpoint):
                x = methods.index(point.method) + (offset - (len(checkpoints) - 1) / 2) * width
                if len(point.values) >= MIN_SEEDS_INTERVAL and not (math.isnan(point.low) or math.isnan(point.high)):
                    axes.vlines(x, point.low, point.high, color=colour, linewidth=2.5, alpha=0.6)
                axes.scatter([x] * len(point.values), point.values, color="black", s=9, zorder=3, clip_on=False)
                axes.scatter([x], [point.mean], color=colour, marker=marker, s=40, zorder=4, clip_on=False,
                             edgecolor="white", linewidth=0.5)
        axes.set_xticks(range(len(methods)), methods, rotation=30 if len(methods) > 3 else 0,
                        ha="right" if len(methods) > 3 else "center", fontsize=8)
        axes.set_xlim(-0.6, len(methods) - 0.4)
        _limits(axes, metric)
        if index % PANELS_PER_ROW == 0:  # one y label per row of panels
            axes.set_ylabel(human_label(metric), fontsize=8)
        axes.grid(axis="y", alpha=0.3)
        if cell:
            axes.set_title(cell, fontsize=8)
    _legend(figure, [(CHECKPOINT_STYLE[c][0] + ": mean", CHECKPOINT_STYLE[c][1], CHECKPOINT_STYLE[c][2])
                     for c in checkpoints])
    _titles(figure, title, "marker: mean over seeds; line: 95% t-interval over seeds (none below 3 seeds); dots: seeds")
    return figure


def _titles(figure: Figure, title: str, how: str) -> None:
    figure.suptitle(f"{title}\n{how}", fontsize=9)


def _legend(figure: Figure, entries: list[tuple[str, str, str]]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colour, marker=marker, linestyle="", label=label)
               for label, colour, marker in entries]
    handles.append(Line2D([], [], color="black", marker="o", markersize=3, linestyle="", label="one seed"))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)


def curves_figure(curves: list[Curve], metric: str, title: str) -> Figure:
    """The periodic metric against optimiser steps and, when every curve knows it, against training FLOPs (methods
    that insert tokens do more work per step). One grid cell: a steps panel and a FLOPs panel; several cells: one
    steps panel per cell. One line per method (mean over seeds), its band the interval over seeds."""
    cells = list(dict.fromkeys(c.cell for c in curves))[:MAX_PANELS]
    with_flops = len(cells) == 1 and bool(curves) and all(c.flops is not None for c in curves)
    figure, panels = _panels(2 if with_flops else len(cells))
    methods = list(dict.fromkeys(c.method or c.group for c in curves))
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    layout = [(panels[0], cells[0], "steps"), (panels[1], cells[0], "flops")] if with_flops else \
        [(axes, cell, "steps") for axes, cell in zip(panels, cells)]
    for axes, cell, x_name in layout:
        for curve in (c for c in curves if c.cell == cell):
            x = curve.steps if x_name == "steps" else curve.flops
            colour = colours[curve.method or curve.group]
            axes.plot(x, curve.mean, marker="o", markersize=2.5, color=colour, linewidth=1.3)
            seeds = 0 if curve.seeds is None else len(curve.seeds)
            if curve.low is not None and curve.high is not None and seeds >= MIN_SEEDS_INTERVAL:
                axes.fill_between(x, curve.low, curve.high, color=colour, alpha=0.15, linewidth=0)
            elif seeds > 1:  # no interval (2 seeds, or a band without its seeds): each seed, thin
                for values in curve.seeds:
                    axes.plot(x, values, color=colour, linewidth=0.7, alpha=0.4)
        axes.set_xlabel("optimiser step" if x_name == "steps" else "training FLOPs (6 x params x positions)",
                        fontsize=8)
        axes.set_ylabel(human_label(metric), fontsize=8)
        _limits(axes, metric)
        axes.grid(alpha=0.3)
        if cell and not with_flops:
            axes.set_title(cell, fontsize=8)
    from matplotlib.lines import Line2D

    figure.legend(handles=[Line2D([], [], color=colours[m], label=m) for m in methods], loc="outside lower center",
                  ncols=min(len(methods), 6), fontsize=8, frameon=False)
    _titles(figure, title, "line: mean over seeds; band: 95% t-interval over seeds (below 3 seeds: a thin line per "
            "seed)")
    return figure
