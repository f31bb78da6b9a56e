"""A suite's ``reference:`` section: published numbers (e.g. a paper's table) that ``mtp-bench compare`` prints
beside our means, with our gap to them.

Values are keyed by our final metric name as the compare tables write it with its checkpoint
(``best_on_test/test/gsm8k/exact_match``, ``best/test/rouge/rougeL``, ``last/lm_eval/<task>/<metric>/<filter>``)
and then by method label (``methods[].label``, else its name). ``scale`` converts ours to the paper's unit: our
scores are proportions in [0, 1] and papers print percentages, so ``scale: 100``; the gap is
``our mean x scale - paper``. The section changes no trial (it is not part of any trial id).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from mtp_bench.suite.sections import StrictModel

CHECKPOINTS = ("last", "best", "best_on_test")
"""Checkpoint prefixes of final metrics (the evaluation runner writes them; analysis reads them)."""


class ReferenceConfig(StrictModel):
    source: str = Field(min_length=1)
    """Where the numbers come from, precisely enough to find them (``arXiv 2505.10518 Table 1, Gemma 2B``)."""

    scale: float = Field(default=1.0, gt=0)
    """Factor that puts our values in the reference's unit (100 when the reference prints percentages)."""

    metrics: dict[str, dict[str, float]] = Field(min_length=1)
    """Final metric name (with checkpoint, as in ``compare.csv``: checkpoint + ``/`` + metric) -> method label ->
    the reference's value, e.g. ``{"best_on_test/test/gsm8k/exact_match": {ntp: 38.87, mutor: 42.10}}``."""

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
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
        return metrics

    def problems(self, labels: list[str], scorers: list[str],
                 lm_eval_tasks: list[str]) -> list[tuple[tuple[str, ...], str, str]]:
        """(key path under the section, message, the name at fault) for names the suite does not have: a method
        label that is not one of the suite's, a scorer or lm-eval task the suite does not run."""
        out: list[tuple[tuple[str, ...], str, str]] = []
        for name, values in self.metrics.items():
            parts = name.split("/")
            kind, producer = parts[1], parts[2]
            known = scorers if kind == "test" else lm_eval_tasks
            if producer not in known:
                what = "scorer" if kind == "test" else "lm-eval task"
                out.append((("metrics", name), f"{what} {producer!r} is not run by this suite "
                                               f"({', '.join(known) or 'none'})", producer))
            for label in values:
                if label not in labels:
                    out.append((("metrics", name, label), f"{label!r} is not one of the suite's method labels "
                                                          f"({', '.join(labels)})", label))
        return out

    def value(self, metric: str, method: str) -> float | None:
        """The reference's value of a final metric (checkpoint included) for a method label, if it has one."""
        return self.metrics.get(metric, {}).get(method)

    def gap(self, metric: str, method: str, ours: float) -> float | None:
        """``ours x scale - reference`` (None when the reference has no value there)."""
        paper = self.value(metric, method)
        return None if paper is None else ours * self.scale - paper
