"""``mtp-bench compare``: the methods of a suite side by side, from the MLflow store.

Per method (and grid cell) and final metric: the mean over seeds with a 95% t-interval; against the suite's baseline,
the difference with its interval and a p-value on per-question correctness (McNemar's exact test; see
:mod:`mtp_bench.stats`); extra parameters, training FLOPs and seconds. Checkpoints: ``last``, ``best`` (best on
validation) and ``best_on_test`` (selected on the test split, as the MuToR paper did for GSM8K: labelled as
optimistic wherever it appears). Per-horizon accuracy rows are the held-out ``test/acc/ntp`` (horizon 1) and
``test/acc/h{k}`` (the method's predictor of the token k steps ahead).

Writes ``compare.md``, ``compare.csv``, ``accuracy.png`` and ``accuracy_over_steps.png`` under ``results/<suite>/``
(``--output``) and prints the tables with rich. A partial grid works: failed, running and missing trials are listed.
The computation lives in :mod:`mtp_bench.comparison`; this module renders it and holds the command line.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import sys
from pathlib import Path
from typing import Any

from mtp_bench import stats
from mtp_bench.comparison import CHECKPOINT_LABELS, SECTIONS, CompareError, Comparison, Row, Store, build_comparison

DEFAULT_STORE = "sqlite:///results/mlflow.db"


# ----------------------------------------------------------------------------------------------- writing ----
def _num(value: float | None, signed: bool = False) -> str:
    if value is None or value != value:
        return "—"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def mean_text(interval: stats.Interval) -> str:
    if interval.n < 2:
        return f"{_num(interval.mean)} (n=1, no CI)"
    return f"{_num(interval.mean)} [{_num(interval.low)}, {_num(interval.high)}]"


def delta_text(row: Row) -> str:
    if row.ratio is not None:
        return f"x{row.ratio:.3g}"
    if row.paired is None:
        return ""
    p = row.paired
    return f"{_num(p.delta, True)} [{_num(p.low, True)}, {_num(p.high, True)}]"


def p_text(row: Row) -> str:
    if row.paired is None or row.paired.p_value != row.paired.p_value:
        return ""
    value = row.paired.p_value
    return ("<1e-4" if value < 1e-4 else f"{value:.3g}") + f" ({row.paired.test}, {row.paired.n_pairs} pairs)"


def table_rows(comparison: Comparison, section: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells of one section, as shown on screen and in markdown."""
    header = ["metric", "checkpoint", "method", "n", "mean [95% CI]",
              f"vs {comparison.baseline}" + (" (ratio)" if section == "cost" else " Δ [95% CI]"), "p"]
    cells = [[row.metric, CHECKPOINT_LABELS.get(row.checkpoint, ""), row.group.label, str(row.interval.n),
              mean_text(row.interval), delta_text(row), p_text(row)]
             for row in comparison.rows if row.section == section]
    return header, cells


def markdown(comparison: Comparison) -> str:
    lines = [f"# {comparison.title}", "",
             f"Store `{comparison.store}`; baseline `{comparison.baseline}`; "
             f"{sum(len(g.runs) for g in comparison.groups)} finished trials in {len(comparison.groups)} groups; "
             f"written {datetime.datetime.now().isoformat(timespec='seconds')}.", "",
             "Mean over seeds with a 95% t-interval. Δ: method minus baseline, same seed against same seed; p: McNemar "
             "exact test on per-question correctness (pooled over the paired seeds), with a paired bootstrap interval "
             "over questions; paired t over seeds where no per-question predictions exist.", ""]
    if comparison.groups and not any(g.method == comparison.baseline for g in comparison.groups):
        lines += [f"> The baseline `{comparison.baseline}` has no finished trials: no differences or p-values.", ""]
    if any(row.checkpoint == "best_on_test" for row in comparison.rows):
        lines += ["> **best_on_test** rows come from a checkpoint selected on the TEST split (the MuToR paper's "
                  "protocol for GSM8K): optimistic, not a held-out estimate.", ""]
    for section in SECTIONS:
        header, cells = table_rows(comparison, section)
        if not cells:
            continue
        lines += [f"## {section.capitalize()}", ""]
        if section == "per-horizon accuracy":
            lines += ["Held-out teacher-forced accuracy of each predictor: `acc/ntp` is horizon 1, `acc/h{k}` the "
                      "predictor of the token k steps ahead.", ""]
        lines += _md_table(header, cells) + [""]
    if comparison.excluded:
        lines += ["## Trials not included", ""] + _md_table(["trial", "status", "reason"],
                                                              [list(e) for e in comparison.excluded]) + [""]
    return "\n".join(lines)


def _md_table(header: list[str], cells: list[list[str]]) -> list[str]:
    escape = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(escape(c) for c in row) + " |" for row in cells]


CSV_COLUMNS = ["section", "checkpoint", "checkpoint_label", "metric", "method", "cell", "n", "seeds", "mean",
               "ci_low", "ci_high", "std", "baseline", "delta", "delta_ci_low", "delta_ci_high", "p_value", "test",
               "n_pairs", "method_only_correct", "baseline_only_correct", "ratio_to_baseline"]


def write_csv(comparison: Comparison, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in comparison.rows:
            i, p = row.interval, row.paired
            writer.writerow([row.section, row.checkpoint, CHECKPOINT_LABELS.get(row.checkpoint, ""), row.metric,
                             row.group.method, row.group.cell, i.n, " ".join(str(s) for s in row.seeds), i.mean,
                             i.low, i.high, i.std, comparison.baseline, *(
                                 (p.delta, p.low, p.high, p.p_value, p.test, p.n_pairs, p.method_only,
                                  p.baseline_only) if p else [""] * 8), "" if row.ratio is None else row.ratio])


def write_outputs(comparison: Comparison, folder: Path) -> list[Path]:
    """compare.md, compare.csv and the figures; returns the files written."""
    from mtp_bench import plots

    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "compare.md", folder / "compare.csv"]
    written[0].write_text(markdown(comparison))
    write_csv(comparison, written[1])
    headline = comparison.headline
    bars = [plots.Bar(r.group.label, r.checkpoint, r.interval.mean, r.interval.low, r.interval.high,
                      list(r.group.values(f"{r.checkpoint}/{r.metric}").values()))
            for r in comparison.rows if r.metric == headline and r.checkpoint]
    if bars:
        plots.accuracy_figure(bars, headline, comparison.title).savefig(folder / "accuracy.png", dpi=120)
        written.append(folder / "accuracy.png")
    if comparison.curves:
        periodic = comparison.periodic_metric
        figure = plots.curves_figure(comparison.curves, periodic, f"{comparison.title}: {periodic} during training")
        figure.savefig(folder / "accuracy_over_steps.png", dpi=120)
        written.append(folder / "accuracy_over_steps.png")
    return written


def print_comparison(console: Any, comparison: Comparison, written: list[Path]) -> None:
    from rich.table import Table

    for section in ("scores", "per-horizon accuracy", "cost"):
        header, cells = table_rows(comparison, section)
        if cells:
            table = Table(title=f"{comparison.title}: {section}")
            for column in header:
                table.add_column(column)
            for cells_row in cells:
                table.add_row(*cells_row, style="red" if "TEST" in cells_row[1] else None)
            console.print(table)
    if comparison.groups and not any(g.method == comparison.baseline for g in comparison.groups):
        console.print(f"[yellow]baseline {comparison.baseline!r} has no finished trials: no p-values[/]")
    if comparison.excluded:
        console.print("[yellow]not included:[/] " + "; ".join(f"{t} ({s}{': ' + r if r else ''})"
                                                               for t, s, r in comparison.excluded))
    if written:
        console.print(f"written: {', '.join(str(p) for p in written)}")


# --------------------------------------------------------------------------------------------------- CLI ----
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="?", help="suite YAML: its store, experiment, baseline and grid are used")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="dotted overrides of the suite")
    parser.add_argument("--experiment", help="MLflow experiment to compare (without a suite, or instead of its)")
    parser.add_argument("--store", help=f"MLflow tracking URI (default: the suite's, else $MLFLOW_TRACKING_URI, "
                                        f"else {DEFAULT_STORE})")
    parser.add_argument("--baseline", help="method label the others are tested against (default: the suite's)")
    parser.add_argument("--metric", help="headline metric of the plots, e.g. gsm8k/exact_match (default: the "
                                         "trials' checkpoint-selection metric)")
    parser.add_argument("--output", help="folder for the tables and plots (default: results/<suite>)")


def _absolute_store(uri: str) -> str:
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def compare_suite(suite: Any, *, store_uri: str | None = None, experiment: str | None = None,
                  baseline: str | None = None, metric: str | None = None) -> Comparison:
    from mtp_bench.suite import expand_grid

    expected = {trial.trial_id: trial.label for trial in expand_grid(suite)}
    store = Store(store_uri or suite.tracking.uri, experiment or suite.tracking.experiment or suite.name)
    return build_comparison(store, title=f"Comparison: {suite.name}", baseline=baseline or suite.baseline,
                            suite=suite.name, expected=expected, method_order=[m.display_name for m in suite.methods],
                            metric=metric)


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    try:
        if args.suite:
            from mtp_bench.suite import load_suite

            suite = load_suite(args.suite, args.overrides)
            name = suite.name
            comparison = compare_suite(suite, store_uri=args.store and _absolute_store(args.store),
                                       experiment=args.experiment, baseline=args.baseline, metric=args.metric)
        elif args.experiment:
            if args.overrides:
                raise CompareError("overrides need a suite file")
            uri = _absolute_store(args.store or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE)
            name = args.experiment
            comparison = build_comparison(Store(uri, args.experiment), title=f"Comparison: {args.experiment}",
                                          baseline=args.baseline, metric=args.metric)
        else:
            raise CompareError("give a suite file (mtp-bench compare SUITE.yaml) or --experiment NAME")
    except CompareError as exc:
        print(f"mtp-bench: error: {exc}", file=sys.stderr)
        return 2
    written = write_outputs(comparison, Path(args.output) if args.output else Path("results") / name)
    print_comparison(console, comparison, written)
    if not comparison.groups:
        console.print("[yellow]no finished trials to compare yet[/]")
        return 1
    return 0


def compare_after_run(suite: Any, parent_run_id: str, console: Any) -> None:
    """After ``mtp-bench run``: print the comparison, write it under results/<suite>/ and attach it to the parent
    run. A failure here never fails the run: the trials are recorded and ``mtp-bench compare`` retries."""
    from mtp_bench.tracking import Tracker

    try:
        comparison = compare_suite(suite)
        written = write_outputs(comparison, Path("results") / suite.name)
        print_comparison(console, comparison, written)
        tracker = Tracker(suite.tracking.uri, suite.tracking.experiment or suite.name)
        for path in written:
            tracker.log_file(parent_run_id, path, "compare")
    except Exception as exc:  # noqa: BLE001 - reported, and the run's own exit code stands
        console.print(f"[yellow]comparison not written ({type(exc).__name__}: {exc}); "
                      f"retry with `mtp-bench compare <suite.yaml>`[/]")
