"""A suite's ``reference:`` section: published numbers (e.g. a paper's table) that ``mtp-bench compare`` prints
beside our means, with our gap to them.

Values are keyed by our final metric name as the compare tables write it with its checkpoint
(``best_on_test/test/gsm8k/exact_match``, ``best/test/rouge/rougeL``, ``last/lm_eval/<task>/<metric>/<filter>``)
and then by method label (``methods[].label``, else its name). A label's value is one number, for every grid cell
of that method, or, for a method with a sweep, a mapping from grid cell to number: the cell named as compare rows name
it (``mutor [method.params.d_max=2]`` -> ``"method.params.d_max=2"``; several keys space-separated, in any order).
``scale`` converts ours to the paper's unit: our scores are proportions in [0, 1] and papers print percentages, so
``scale: 100``; the gap is ``our mean x scale - paper``. The section changes no trial (it is not part of any trial
id).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from pydantic import Field, field_validator

from mtp_bench.suite.sections import StrictModel

CHECKPOINTS = ("last", "best", "best_on_test")
"""Checkpoint prefixes of final metrics (the evaluation runner writes them; analysis reads them)."""

_ITEM = re.compile(r"\s+(?=[A-Za-z0-9_.\-]+=)")  # where one "key=value" of a cell name ends and the next begins


def cell_key(cell: str) -> str:
    """A grid cell's name with its ``key=value`` items sorted, as the harness writes it (``mtp_bench.cell``)."""
    return " ".join(sorted(item for item in _ITEM.split(cell.strip()) if item))


def cell_names(sweeps: dict[str, dict[str, list[Any]]], overrides: dict[str, list[Any]]) -> dict[str, list[str]]:
    """Method label -> the names of its grid cells: its own sweep (keys under ``method.``) crossed with
    ``grid.overrides``, each ``key=value`` as the harness tags trials (``""`` for a method with neither)."""

    def product(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
        return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]

    shared = product(overrides)
    return {label: [cell_key(" ".join(f"{k}={v}" for k, v in {**{f"method.{k}": v for k, v in own.items()},
                                                                **common}.items()))
                    for own in product(sweep) for common in shared]
            for label, sweep in sweeps.items()}


class ReferenceConfig(StrictModel):
    source: str = Field(min_length=1)
    """Where the numbers come from, precisely enough to find them (``arXiv 2505.10518 Table 1, Gemma 2B``)."""

    scale: float = Field(default=1.0, gt=0)
    """Factor that puts our values in the reference's unit (100 when the reference prints percentages)."""

    metrics: dict[str, dict[str, float | dict[str, float]]] = Field(min_length=1)
    """Final metric name (with checkpoint, as in ``compare.csv``: checkpoint + ``/`` + metric) -> method label ->
    the reference's value, e.g. ``{"best_on_test/test/gsm8k/exact_match": {ntp: 38.87, mutor: 42.10}}``; for a swept
    method, grid cell -> value instead of one value: ``mutor: {"method.params.d_max=2": 41.93, ...}`` (cells the
    mapping leaves out have no reference)."""

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, metrics: dict[str, dict[str, float | dict[str, float]]]
                      ) -> dict[str, dict[str, float | dict[str, float]]]:
        for name, values in metrics.items():
            checkpoint, _, rest = name.partition("/")
            parts = rest.split("/")
            if checkpoint not in CHECKPOINTS or not (
                (parts[0] == "test" and len(parts) >= 3) or (parts[0] == "lm_eval" and len(parts) == 4)
            ):
                raise ValueError(f"{name!r} is not a final metric name: expected <checkpoint>/test/<scorer>/<metric> "
                                 f"or <checkpoint>/lm_eval/<task>/<metric>/<filter>, checkpoint one of "
                                 f"{', '.join(CHECKPOINTS)}")
            if not values:
                raise ValueError(f"{name!r} has no values (method label -> number)")
            for label, value in values.items():
                if isinstance(value, dict) and not value:
                    raise ValueError(f"{name!r}: {label!r} has no values (grid cell -> number)")
        return metrics

    def problems(self, labels: list[str], scorers: list[str], lm_eval_tasks: list[str],
                 cells: dict[str, list[str]] | None = None) -> list[tuple[tuple[str, ...], str, str]]:
        """(key path under the section, message, the name at fault) for names the suite does not have: a method
        label that is not one of the suite's, a scorer or lm-eval task the suite does not run, a grid cell a method
        does not have (``cells``: label -> its cell names, see :func:`cell_names`; unchecked when None)."""
        out: list[tuple[tuple[str, ...], str, str]] = []
        for name, values in self.metrics.items():
            parts = name.split("/")
            kind, producer = parts[1], parts[2]
            known = scorers if kind == "test" else lm_eval_tasks
            if producer not in known:
                what = "scorer" if kind == "test" else "lm-eval task"
                out.append((("metrics", name), f"{what} {producer!r} is not run by this suite "
                                               f"({', '.join(known) or 'none'})", producer))
            for label, value in values.items():
                if label not in labels:
                    out.append((("metrics", name, label), f"{label!r} is not one of the suite's method labels "
                                                          f"({', '.join(labels)})", label))
                elif isinstance(value, dict) and cells is not None:
                    known = cells.get(label, [])
                    for cell in value:
                        if cell_key(cell) not in known:
                            shown = ", ".join(repr(c) for c in known if c) or "none: it has no sweep"
                            out.append((("metrics", name, label, cell), f"{cell!r} is not a grid cell of {label!r} "
                                                                       f"(its cells: {shown})", cell))
        return out

    def value(self, metric: str, method: str, cell: str = "") -> float | None:
        """The reference's value of a final metric (checkpoint included) for a method label and grid cell, if it has
        one: the label's number for every cell, or the number its cell mapping gives this cell."""
        value = self.metrics.get(metric, {}).get(method)
        if isinstance(value, dict):
            return next((v for k, v in value.items() if cell_key(k) == cell_key(cell)), None)
        return value

    def gap(self, metric: str, method: str, ours: float, cell: str = "") -> float | None:
        """``ours x scale - reference`` (None when the reference has no value there)."""
        paper = self.value(metric, method, cell)
        return None if paper is None else ours * self.scale - paper
