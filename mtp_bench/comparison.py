"""What ``mtp-bench compare`` computes, read back from the MLflow store alone (never a trial's private files).

Trial runs are grouped by method label and grid cell, one run per trial id (the newest finished one). For each group
and each final metric: the mean over seeds with a 95% t-interval; against the baseline group of the same cell, the
difference with its interval and a p-value from per-question results (the trials' ``predictions/<checkpoint>/``
artifacts; :mod:`mtp_bench.stats` says how seeds and questions are paired); for costs, the ratio to the baseline.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtp_bench import stats
from mtp_bench.tracking import TAG_ERROR, TAG_KIND, TAG_METHOD, TAG_SEED, TAG_SUITE, TAG_TRIAL_ID

CHECKPOINTS = ("last", "best", "best_on_test")
CHECKPOINT_LABELS = {"last": "last checkpoint", "best": "best on validation",
                     "best_on_test": "best on TEST split (paper protocol; optimistic)"}
SECTIONS = ("scores", "per-horizon accuracy", "held-out loss", "selected checkpoint", "cost")
COST_METRICS = ("params/extra", "params/total", "train/flops_total", "train/seconds_total",
                "train/tokens_processed_total")
_HORIZON = re.compile(r"test/acc/(ntp|h\d+)")
_CELL_ITEM = re.compile(r" (?=[A-Za-z0-9_.\-]+=)")


class CompareError(ValueError):
    """Nothing to compare (no store, no experiment); the message is meant for the user as it is."""


@dataclass
class TrialRun:
    run_id: str
    trial_id: str
    method: str
    seed: int | None
    cell: str
    status: str
    metrics: dict[str, float]
    tags: dict[str, str]
    params: dict[str, str]

    @classmethod
    def from_mlflow(cls, run: Any) -> TrialRun:
        tags = run.data.tags
        seed = tags.get(TAG_SEED)
        return cls(run.info.run_id, tags.get(TAG_TRIAL_ID, run.info.run_id), tags.get(TAG_METHOD, "?"),
                   int(seed) if seed and seed.lstrip("-").isdigit() else None, tags.get("mtp_bench.cell", ""),
                   run.info.status, dict(run.data.metrics), dict(tags), dict(run.data.params))

    @property
    def label(self) -> str:
        return " ".join(part for part in (self.method, self.cell, f"seed={self.seed}") if part)


@dataclass
class Group:
    method: str
    cell: str
    runs: list[TrialRun]  # finished, one per trial

    @property
    def label(self) -> str:
        return f"{self.method} [{self.cell}]" if self.cell else self.method

    def values(self, metric: str) -> dict[int | None, float]:
        return {run.seed: run.metrics[metric] for run in self.runs if metric in run.metrics}

    def run(self, seed: int | None) -> TrialRun:
        return next(run for run in self.runs if run.seed == seed)


@dataclass
class Row:
    section: str
    checkpoint: str  # "" for cost rows
    metric: str  # without the checkpoint prefix
    group: Group
    interval: stats.Interval
    seeds: list[int | None]
    paired: stats.PairedResult | None = None  # against the baseline (None for the baseline itself)
    ratio: float | None = None  # cost rows: mean / baseline mean


@dataclass
class Comparison:
    title: str
    store: str
    baseline: str
    groups: list[Group]
    rows: list[Row]
    excluded: list[tuple[str, str, str]] = field(default_factory=list)  # (trial, status, reason)
    headline: str | None = None  # e.g. "test/gsm8k/exact_match"
    curves: list[Any] = field(default_factory=list)  # plots.Curve of the periodic metric
    periodic_metric: str = ""  # e.g. "val/gsm8k/exact_match"


# ------------------------------------------------------------------------------------------------ reading ----
def shared_cell(cell: str) -> str:
    """The grid values a method's cell shares with the baseline's (its own ``method.*`` sweep values removed)."""
    return " ".join(item for item in _CELL_ITEM.split(cell) if item and not item.startswith("method."))


def classify(name: str, scorers: set[str]) -> tuple[str, str, str] | None:
    """(section, checkpoint, metric) of a final metric name, or None for names compare does not tabulate."""
    if name in COST_METRICS:
        return "cost", "", name
    checkpoint, _, rest = name.partition("/")
    if checkpoint not in CHECKPOINTS or not rest:
        return None
    if rest == "step" or rest.startswith("val/"):
        return "selected checkpoint", checkpoint, rest
    parts = rest.split("/")
    if parts[0] == "lm_eval":
        return ("scores", checkpoint, rest) if len(parts) == 4 and not parts[2].endswith("_stderr") else None
    if parts[0] != "test":
        return None
    if len(parts) >= 3 and (parts[1] in scorers or (not scorers and parts[1] not in ("loss", "acc"))):
        return "scores", checkpoint, rest
    if _HORIZON.fullmatch(rest):
        return "per-horizon accuracy", checkpoint, rest
    return "held-out loss", checkpoint, rest


def sample_source(checkpoint: str, metric: str) -> tuple[str, str] | None:
    """(artifact path, per-sample score key) holding the per-question results behind a score metric."""
    parts = metric.split("/")
    if parts[0] == "test" and len(parts) >= 3:
        return f"predictions/{checkpoint}/test_{parts[1]}.jsonl", "/".join(parts[2:])
    if parts[0] == "lm_eval" and len(parts) == 4:
        return f"predictions/{checkpoint}/lm_eval/{parts[1]}.jsonl", "/".join(parts[2:])
    return None


class Store:
    """Read access to one experiment: trial runs, metric histories and prediction artifacts (cached)."""

    def __init__(self, uri: str, experiment: str):
        from mlflow import MlflowClient

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per artifact otherwise
        if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
            raise CompareError(f"no MLflow store at {uri[len('sqlite:///'):]} (run the suite first, or pass --store)")
        self.uri, self.client = uri, MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            names = ", ".join(e.name for e in self.client.search_experiments()) or "none"
            raise CompareError(f"no experiment {experiment!r} in {uri}; experiments there: {names}")
        self.experiment_id = found.experiment_id
        self._rows: dict[tuple[str, str], list[dict[str, Any]] | None] = {}

    def trial_runs(self, suite: str | None) -> list[TrialRun]:
        query = f"tags.`{TAG_KIND}` = 'trial'" + (f" and tags.`{TAG_SUITE}` = '{suite}'" if suite else "")
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], query, order_by=["attributes.start_time DESC"],
                                           page_token=token)
            runs += [TrialRun.from_mlflow(run) for run in page]
            token = page.token
            if not token:
                return runs

    def history(self, run_id: str, metric: str) -> dict[int, float]:
        return {m.step: m.value for m in self.client.get_metric_history(run_id, metric)}

    def scores(self, run_id: str, path: str, key: str) -> dict[int, float] | None:
        """Per-question scores ``index -> value`` from a predictions artifact; None when it is not there. Rows
        without ``scores`` (a scorer with one verdict) use their boolean ``correct``."""
        if (run_id, path) not in self._rows:
            try:
                with tempfile.TemporaryDirectory(prefix="mtp-bench-compare-") as folder:  # read, then gone
                    local = self.client.download_artifacts(run_id, path, folder)
                    text = Path(local).read_text()
                self._rows[(run_id, path)] = [json.loads(line) for line in text.splitlines() if line.strip()]
            except Exception:  # absent artifact (logging off, older run): no paired test on samples
                self._rows[(run_id, path)] = None
        rows = self._rows[(run_id, path)]
        if rows is None:
            return None
        out = {}
        for row in rows:
            value = row["scores"].get(key) if "scores" in row else row.get("correct")
            if value is None or "index" not in row:
                return None
            out[int(row["index"])] = float(value)
        return out


def select_runs(runs: list[TrialRun], expected: dict[str, str] | None) -> tuple[list[TrialRun], list[tuple]]:
    """One run per trial id (the newest finished one, else the newest), restricted to the suite's trials when
    ``expected`` (trial id -> label) is given; returns (finished runs, excluded rows)."""
    chosen: dict[str, TrialRun] = {}
    excluded: list[tuple[str, str, str]] = []
    for run in runs:  # newest first
        kept = chosen.get(run.trial_id)
        if kept is None or (kept.status != "FINISHED" and run.status == "FINISHED"):
            if kept is not None:
                excluded.append((kept.label, kept.status, "superseded by a finished run of the same trial"))
            chosen[run.trial_id] = run
        elif run.status == "FINISHED":
            excluded.append((run.label, run.status, "older repeat of the same trial (the newest is used)"))
    other = [tid for tid in chosen if expected is not None and tid not in expected]
    if other:
        excluded.append((f"{len(other)} run(s)", "-", "other configurations of this experiment, not in the suite"))
    finished = []
    for trial_id, run in chosen.items():
        if trial_id in other:
            continue
        if run.status == "FINISHED":
            finished.append(run)
        else:
            reason = run.tags.get(TAG_ERROR) or ("still running or interrupted" if run.status == "RUNNING" else "")
            excluded.append((run.label, run.status, reason))
    for trial_id, label in (expected or {}).items():
        if trial_id not in chosen:
            excluded.append((label, "MISSING", "not run yet"))
    return finished, excluded


# ---------------------------------------------------------------------------------------------- comparing ----
def build_comparison(store: Store, *, title: str, baseline: str | None, suite: str | None = None,
                     expected: dict[str, str] | None = None, method_order: list[str] | None = None,
                     metric: str | None = None) -> Comparison:
    runs, excluded = select_runs(store.trial_runs(suite), expected)
    methods = sorted({run.method for run in runs}, key=lambda m: (method_order or []).index(m)
                     if m in (method_order or []) else len(method_order or []))
    if baseline is None:
        baseline = "ntp" if "ntp" in methods else (methods[0] if methods else "ntp")
    methods.sort(key=lambda m: m != baseline)  # stable: the baseline first, the rest in suite order
    cells = sorted({run.cell for run in runs})
    groups = [Group(m, c, [r for r in runs if r.method == m and r.cell == c]) for m in methods for c in cells]
    groups = [g for g in groups if g.runs]
    scorers = {v for run in runs for k, v in run.params.items() if re.fullmatch(r"evaluation\.scorers\.\d+\.name", k)}
    rows = [row for group in groups for row in group_rows(group, scorers)]
    index = {g.label: g for g in groups}
    for row in rows:
        partner = next((g for g in groups if g.method == baseline and g.cell == shared_cell(row.group.cell)), None)
        if partner is None or partner is row.group:
            continue
        if row.section == "cost":
            base = stats.mean_ci(list(partner.values(row.metric).values())).mean
            row.ratio = row.interval.mean / base if base else None
        else:
            row.paired = paired_result(store, row, partner)
    order = {name: i for i, name in enumerate(SECTIONS)}
    rows.sort(key=lambda r: (order[r.section], r.metric, CHECKPOINTS.index(r.checkpoint) if r.checkpoint else 0,
                             list(index).index(r.group.label)))
    headline = headline_metric(runs, metric)
    comparison = Comparison(title, store.uri, baseline, groups, rows, excluded, headline)
    comparison.curves, comparison.periodic_metric = curves(store, groups, headline)
    return comparison


def group_rows(group: Group, scorers: set[str]) -> list[Row]:
    rows = []
    for name in sorted({name for run in group.runs for name in run.metrics}):
        placed = classify(name, scorers)
        if placed is not None:
            values = group.values(name)
            rows.append(Row(placed[0], placed[1], placed[2], group, stats.mean_ci(list(values.values())),
                            sorted(values, key=lambda s: (s is None, s))))
    return rows


def paired_result(store: Store, row: Row, baseline: Group) -> stats.PairedResult | None:
    """Same seed against same seed; per question when both sides logged predictions, else across seeds."""
    full = f"{row.checkpoint}/{row.metric}" if row.checkpoint else row.metric
    mine, theirs = row.group.values(full), baseline.values(full)
    seeds = sorted((s for s in mine if s in theirs), key=lambda s: (s is None, s))
    if not seeds:
        return None
    source = sample_source(row.checkpoint, row.metric) if row.section == "scores" else None
    if source is not None:
        pairs = [(store.scores(row.group.run(s).run_id, *source), store.scores(baseline.run(s).run_id, *source))
                 for s in seeds]
        if all(a is not None and b is not None for a, b in pairs):
            common = sorted(set.intersection(*(set(a) & set(b) for a, b in pairs)))
            if common:
                method = np.array([[a[i] for a, _ in pairs] for i in common])
                base = np.array([[b[i] for _, b in pairs] for i in common])
                return stats.paired_sample_test(method, base)
    return stats.paired_seed_test([mine[s] for s in seeds], [theirs[s] for s in seeds])


def headline_metric(runs: list[TrialRun], requested: str | None) -> str | None:
    """The metric of the plots: ``--metric``, else the trials' selection metric (tag ``mtp_bench.select_metric``)."""
    chosen = requested or (Counter(r.tags.get("mtp_bench.select_metric") for r in runs
                                   if r.tags.get("mtp_bench.select_metric")).most_common(1) or [(None, 0)])[0][0]
    if chosen is None:
        return None
    return chosen if chosen.startswith(("test/", "lm_eval/")) else f"test/{chosen}"


def curves(store: Store, groups: list[Group], headline: str | None) -> tuple[list[Any], str]:
    """Per group, the periodic metric over steps (mean over seeds, t-interval band) and over training FLOPs; and
    the metric's name with its split (``val/...``, or ``test/...`` for trials without a validation split)."""
    from mtp_bench.plots import Curve

    if headline is None or not headline.startswith("test/"):
        return [], ""
    out, names = [], Counter()
    for group in groups:
        series, flops = [], []
        for run in group.runs:
            split = run.tags.get("mtp_bench.periodic_split", "val")
            history = store.history(run.run_id, f"{split}/{headline[len('test/'):]}")
            names[f"{split}/{headline[len('test/'):]}"] += bool(history)
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
        intervals = [stats.mean_ci([h[s] for h in series]) for s in steps]
        curve = Curve(group.label, np.array(steps), np.array([i.mean for i in intervals]))
        if len(series) > 1:
            curve.low, curve.high = np.array([i.low for i in intervals]), np.array([i.high for i in intervals])
        if all(tokens and per_token for tokens, per_token in flops):
            per_run = [np.interp(steps, sorted(t), [t[k] for k in sorted(t)]) * per_token for t, per_token in flops]
            curve.flops = np.mean(per_run, axis=0)
        out.append(curve)
    return out, (names.most_common(1)[0][0] if out else "")


