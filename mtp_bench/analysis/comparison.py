"""What ``mtp-bench compare`` computes, read back from the store alone (never a trial's private files).

For each method group (method label and grid cell) and each final metric: the mean over seeds with an interval
over seeds (:func:`stats.summarise`); against the baseline group of the same cell, seed s against seed s: the
per-seed differences, their mean, a t-interval and p-values over seeds, with per-question outcomes (the trials'
``predictions/<checkpoint>/`` artifacts) feeding the within-test-set evidence: the two-level bootstrap and the
within-seed McNemar tests (:mod:`mtp_bench.analysis.stats` says exactly what); for costs, the ratio to the baseline's
mean; where the suite has a ``reference:`` section (a paper's numbers), the reference value and our gap to it. Also
the rows the verdict speaks for (the headline metric at the headline checkpoint, :mod:`mtp_bench.analysis.verdict`),
which commits the runs come from, and the periodic metric's curves for the plots.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from mtp_bench.analysis import stats
from mtp_bench.analysis.names import CHECKPOINTS, SECTIONS, bounds, classify, sample_source
from mtp_bench.analysis.plots import Curve
from mtp_bench.analysis.runs import Excluded, Group, baseline_group, group_runs, runs_by_commit, seed_key, select_runs
from mtp_bench.suite.reference import ReferenceConfig
from mtp_bench.tracking import TAG_GIT, TAG_PERIODIC_SPLIT, TAG_SELECT_METRIC
from mtp_bench.tracking.store import Store

VERDICT_CHECKPOINTS = ("best", "last", "best_on_test")  # the headline checkpoint: the first the runs have


@dataclass
class Row:
    section: str
    checkpoint: str  # "" for cost rows
    metric: str  # without the checkpoint prefix
    group: Group
    summary: stats.Summary
    seeds: list[int | None]
    paired: stats.SeedComparison | None = None  # against the baseline (None for the baseline itself)
    ratio: float | None = None  # cost rows: mean / baseline mean
    paper: float | None = None  # the suite's reference value for this metric and method (its own unit)
    gap: float | None = None  # mean x reference scale - paper

    @property
    def full_metric(self) -> str:
        return f"{self.checkpoint}/{self.metric}" if self.checkpoint else self.metric


@dataclass
class Comparison:
    title: str
    store: str
    baseline: str
    groups: list[Group]
    rows: list[Row]
    excluded: list[Excluded] = field(default_factory=list)
    headline: str | None = None  # e.g. "test/gsm8k/exact_match"
    curves: list[Curve] = field(default_factory=list)  # the periodic metric, per group
    periodic_metric: str = ""  # e.g. "val/gsm8k/exact_match"
    commits: list[str] = field(default_factory=list)  # git commits recorded on the compared runs
    reference: ReferenceConfig | None = None  # the suite's published numbers, if it has any
    by_commit: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)  # runs_by_commit of the runs

    def unmatched_references(self) -> list[str]:
        """Reference metrics no compared row carries (e.g. ``best_on_test/...`` after ``select_on=validation``)."""
        if self.reference is None:
            return []
        shown = {row.full_metric for row in self.rows if row.paper is not None}
        return [name for name in self.reference.metrics if name not in shown]

    def headline_rows(self) -> list[Row]:
        """Rows of the headline metric (every checkpoint), in table order."""
        return [row for row in self.rows if row.metric == self.headline and row.checkpoint]

    @property
    def headline_checkpoint(self) -> str | None:
        """The checkpoint the verdict speaks for: the one selected on validation (``best``) when the runs have it,
        else the last; the TEST-selected one only when it is all there is."""
        present = {row.checkpoint for row in self.headline_rows()}
        return next((c for c in VERDICT_CHECKPOINTS if c in present), None)

    def verdict_rows(self) -> list[Row]:
        """One row per method (and grid cell) against the baseline: the headline metric at the headline checkpoint."""
        return [row for row in self.headline_rows()
                if row.checkpoint == self.headline_checkpoint and row.paired is not None]


def build_comparison(store: Store, *, title: str, baseline: str | None, suite: str | None = None,
                     expected: dict[str, str] | None = None, method_order: list[str] | None = None,
                     metric: str | None = None, reference: ReferenceConfig | None = None) -> Comparison:
    runs, excluded = select_runs(store.trial_runs(suite), expected)
    groups, baseline = group_runs(runs, baseline, method_order)
    scorers = {v for run in runs for k, v in run.params.items() if re.fullmatch(r"evaluation\.scorers\.\d+\.name", k)}
    rows = [row for group in groups for row in group_rows(group, scorers)]
    for row in rows:
        if reference is not None and row.summary.n:
            row.paper = reference.value(row.full_metric, row.group.method, row.group.cell)  # per sweep cell
            row.gap = reference.gap(row.full_metric, row.group.method, row.summary.mean, row.group.cell)
        partner = baseline_group(groups, row.group, baseline)
        if partner is None:
            continue
        if row.section == "cost":
            base = stats.summarise(list(partner.values(row.metric).values())).mean
            row.ratio = row.summary.mean / base if base else None
        else:
            row.paired = paired_result(store, row, partner)
    order = {name: i for i, name in enumerate(SECTIONS)}
    labels = [g.label for g in groups]
    rows.sort(key=lambda r: (order[r.section], r.metric, CHECKPOINTS.index(r.checkpoint) if r.checkpoint else 0,
                             labels.index(r.group.label)))
    headline = headline_metric(runs, metric)
    comparison = Comparison(title, store.uri, baseline, groups, rows, excluded, headline,
                            commits=sorted({run.tags[TAG_GIT] for run in runs if run.tags.get(TAG_GIT)}),
                            reference=reference, by_commit=runs_by_commit(runs))
    comparison.curves, comparison.periodic_metric = curves(store, groups, headline)
    return comparison


def group_rows(group: Group, scorers: set[str]) -> list[Row]:
    rows = []
    for name in sorted({name for run in group.runs for name in run.metrics}):
        placed = classify(name, scorers)
        if placed is not None:
            values = group.values(name)
            seeds = sorted(values, key=seed_key)
            rows.append(Row(placed[0], placed[1], placed[2], group,
                            stats.summarise([values[s] for s in seeds], bounds(placed[2])), seeds))
    return rows


def paired_result(store: Store, row: Row, baseline: Group) -> stats.SeedComparison | None:
    """Same seed against same seed, over the seeds both groups have; per-question outcomes when both sides
    logged predictions for every paired seed (questions both answered in every seed)."""
    mine, theirs = row.group.values(row.full_metric), baseline.values(row.full_metric)
    seeds = sorted((s for s in mine if s in theirs), key=seed_key)
    if not seeds:
        return None
    per_question = None
    source = sample_source(row.checkpoint, row.metric) if row.section == "scores" else None
    if source is not None:
        pairs = [(store.scores(row.group.run(s).run_id, *source), store.scores(baseline.run(s).run_id, *source))
                 for s in seeds]
        if all(a is not None and b is not None for a, b in pairs):
            common = sorted(set.intersection(*(set(a) & set(b) for a, b in pairs)))
            if common:
                per_question = (np.array([[a[i] for i in common] for a, _ in pairs]),
                                np.array([[b[i] for i in common] for _, b in pairs]))
    return stats.compare_seeds(seeds, [mine[s] for s in seeds], [theirs[s] for s in seeds], bounds(row.metric),
                               per_question)


def headline_metric(runs: list, requested: str | None) -> str | None:
    """The metric of the plots and the power note: ``--metric``, else the trials' selection metric."""
    named = Counter(r.tags.get(TAG_SELECT_METRIC) for r in runs if r.tags.get(TAG_SELECT_METRIC))
    chosen = requested or (named.most_common(1)[0][0] if named else None)
    if chosen is None:
        return None
    return chosen if chosen.startswith(("test/", "lm_eval/")) else f"test/{chosen}"


def curves(store: Store, groups: list[Group], headline: str | None) -> tuple[list[Curve], str]:
    """Per group, the periodic metric over steps (mean over seeds, per-seed values kept) and over training FLOPs;
    and the metric's name with its split (``val/...``, or ``test/...`` for trials without a validation split)."""
    if headline is None or not headline.startswith("test/"):
        return [], ""
    out, names = [], Counter()
    bounded = bounds(headline)
    for group in groups:
        series, flops = [], []
        for run in group.runs:
            name = f"{run.tags.get(TAG_PERIODIC_SPLIT, 'val')}/{headline[len('test/'):]}"
            history = store.history(run.run_id, name)
            names[name] += bool(history)
            if not history:
                continue
            series.append(history)
            tokens = store.history(run.run_id, "train/tokens_processed")
            total = run.metrics.get("train/tokens_processed_total")
            per_token = run.metrics.get("train/flops_total", 0.0) / total if total else None
            flops.append((tokens, per_token))
        steps = sorted(set.intersection(*(set(h) for h in series))) if series else []
        if not steps:
            continue
        summaries = [stats.summarise([h[s] for h in series], bounded) for s in steps]
        curve = Curve(group.label, np.array(steps), np.array([s.mean for s in summaries]), method=group.method,
                      cell=group.cell, seeds=np.array([[h[s] for s in steps] for h in series]))
        if len(series) >= 3:  # a band; where every seed agrees (no spread) it closes on the mean
            curve.low = np.array([s.low if s.has_ci else s.mean for s in summaries])
            curve.high = np.array([s.high if s.has_ci else s.mean for s in summaries])
        if all(tokens and per_token for tokens, per_token in flops):
            per_run = [np.interp(steps, sorted(t), [t[k] for k in sorted(t)]) * per_token for t, per_token in flops]
            curve.flops = np.mean(per_run, axis=0)
        out.append(curve)
    return out, (names.most_common(1)[0][0] if out else "")
