"""The comparison figures read at a glance: human axis names, bounded metrics on [0, 1], per-seed dots, legends
outside every panel, and a figure size that stays sane however many grid cells there are."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mtp_bench.analysis.plots import Curve, Point, accuracy_figure, curves_figure

METRIC = "test/exact_match/exact_match"
UNIT = (-0.03, 1.03)  # [0, 1] and a 3% margin, so values at 0 or 1 stay visible


def on_unit_axis(axes) -> bool:
    ticks = axes.get_yticks()
    return axes.get_ylim() == UNIT and ticks.min() == 0.0 and ticks.max() == 1.0


def points(cells: list[str]) -> list[Point]:
    out = []
    for cell in cells:
        for method, values in (("ntp", [0.2, 0.6, 0.5]), ("mutor", [0.9, 1.0, 0.95]), ("medusa", [0.0, 0.4])):
            low, high = (min(values), max(values)) if len(values) > 2 else (math.nan, math.nan)
            for checkpoint in ("last", "best"):
                out.append(Point(method, cell, checkpoint, float(np.mean(values)), low, high, values))
    return out


def _legend_outside(figure) -> bool:
    """Every legend box is clear of every panel's data area."""
    figure.canvas.draw()
    boxes = [axes.get_window_extent() for axes in figure.axes if axes.get_visible()]
    return bool(figure.legends) and all(not legend.get_window_extent().overlaps(box)
                                        for legend in figure.legends for box in boxes)


def test_accuracy_figure_has_human_labels_unit_axis_and_seed_dots(tmp_path: Path) -> None:
    figure = accuracy_figure(points([""]), METRIC, "Comparison: quickstart")
    (axes,) = [a for a in figure.axes if a.get_visible()]
    assert on_unit_axis(axes)
    assert axes.get_ylabel() == "test exact match"
    assert [t.get_text() for t in axes.get_xticklabels()] == ["ntp", "mutor", "medusa"]
    dots = sum(len(c.get_offsets()) for c in axes.collections if len(c.get_offsets()) > 1)
    assert dots == 2 * (3 + 3 + 2)  # every seed drawn, at both checkpoints
    assert figure.legends and _legend_outside(figure)
    figure.savefig(tmp_path / "accuracy.png", dpi=110)


def test_many_cells_wrap_into_panels_of_a_sane_size() -> None:
    cells = [f"data.params.degree={d} data.params.path_length={p}" for d in (2, 3) for p in (3, 4, 5, 6)]
    figure = accuracy_figure(points(cells), "test/star_graph/first_step_accuracy", "search")
    width, height = figure.get_size_inches()
    assert width <= 16 and height <= 8  # 8 cells: 2 rows of 4, not one 2,868-pixel strip
    panels = [a for a in figure.axes if a.get_visible()]
    assert len(panels) == 8 and all(on_unit_axis(a) for a in panels)
    assert panels[0].get_title() == cells[0]
    assert _legend_outside(figure)


def test_curves_figure_names_axes_and_bounds_accuracy() -> None:
    steps = np.array([100, 200, 300])
    curves = [Curve("ntp", steps, np.array([0.1, 0.4, 0.6]), np.array([0.0, 0.2, 0.5]), np.array([0.3, 0.6, 0.7]),
                    flops=steps * 1e9, method="ntp", seeds=np.array([[0.0, 0.3, 0.5], [0.1, 0.4, 0.6],
                                                                     [0.2, 0.5, 0.7]])),
              Curve("mutor", steps, np.array([0.3, 0.8, 0.9]), flops=steps * 1.6e9, method="mutor")]
    figure = curves_figure(curves, "val/exact_match/exact_match", "quickstart: during training")
    panels = [a for a in figure.axes if a.get_visible()]
    assert [a.get_xlabel() for a in panels] == ["optimiser step", "training FLOPs (6 x params x positions)"]
    assert all(a.get_ylabel() == "validation exact match" and on_unit_axis(a) for a in panels)
    assert _legend_outside(figure)
    loss = curves_figure(curves, "val/loss/ntp", "loss")
    assert not on_unit_axis([a for a in loss.axes if a.get_visible()][0])  # unbounded: matplotlib's limits


def test_no_error_bar_or_band_below_three_seeds() -> None:
    """Whatever interval a caller passes, one or two seeds are drawn as dots or thin lines, never as an interval."""
    two = [Point("ntp", "", "last", 0.4665, 0.0, 0.933, [0.0, 0.933]),
           Point("mutor", "", "last", 0.9, 0.8, 1.0, [0.85, 0.9, 0.95])]
    (axes,) = [a for a in accuracy_figure(two, METRIC, "t").axes if a.get_visible()]
    bars = [c for c in axes.collections if type(c).__name__ == "LineCollection"]
    assert len(bars) == 1 and bars[0].get_segments()[0][:, 1].tolist() == [0.8, 1.0]  # mutor's, not ntp's
    steps = np.array([100, 200])
    curves = [Curve("ntp", steps, np.array([0.2, 0.5]), np.array([0.0, 0.0]), np.array([1.0, 1.0]), method="ntp",
                    seeds=np.array([[0.0, 0.1], [0.4, 0.9]])),
              Curve("mutor", steps, np.array([0.3, 0.6]), np.array([0.2, 0.5]), np.array([0.4, 0.7]), method="mutor",
                    seeds=np.array([[0.2, 0.5], [0.3, 0.6], [0.4, 0.7]]))]
    (panel,) = [a for a in curves_figure(curves, METRIC, "t").axes if a.get_visible()]
    bands = [c for c in panel.collections if type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection")]
    assert len(bands) == 1  # mutor's band; ntp's two seeds are thin lines
    assert len(panel.lines) == 2 + 2  # two means and ntp's two seeds
