"""A comparison as text: the markdown report (``compare.md``), the CSV with every number and full metric names
(``compare.csv``) and the on-screen tables, which fit 120 columns (short metric names, wrapped cells). Where the
suite has a ``reference:`` section, each table with a referenced metric gets the paper's value and our gap beside
the mean."""

from __future__ import annotations

import csv
import datetime
import math
from collections import Counter
from pathlib import Path
from typing import Any

from mtp_bench.analysis import stats
from mtp_bench.analysis.comparison import Comparison, Row
from mtp_bench.analysis.names import CHECKPOINT_LABELS, CHECKPOINT_SHORT, SECTIONS, human_label, short_name

TERMINAL_WIDTH = 120
INTERVAL_SHORT = {stats.TWO_LEVEL: "2-level", stats.SEED_BOOTSTRAP: "seed-boot", stats.T_INTERVAL: "t"}
METHODS_TEXT = (
    "**How to read this.** The seed is the unit: each seed is a separately trained model. *mean [95% CI]*: mean "
    "over seeds; the interval is over seeds — a percentile bootstrap over seeds for bounded metrics (accuracies, "
    "rates: it stays inside [0, 1]; losses and costs: never below 0), a Student-t interval otherwise; one seed has "
    "no interval, two seeds show "
    "both values and no interval. *Δ*: method minus baseline, seed s against seed s, mean of the per-seed "
    "differences; its interval (column *interval*) is a two-level bootstrap (seeds, and test questions shared by "
    "every seed) where per-question outcomes were logged and there are at least 3 seeds, else a seed bootstrap "
    "(bounded) or t-interval over the per-seed differences. *p over seeds*: paired t-test / exact paired "
    "permutation test over seeds; *seeds +/−*: seeds where the method scored higher / lower, with the exact sign "
    "test. Question-level McNemar tests are in *Within-seed evidence*, per seed and conditional on those trained "
    "models.")


def num(value: float | None, signed: bool = False, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.{digits}g}" if signed else f"{value:.{digits}g}"


def p_value(value: float) -> str:
    if value != value:
        return "—"
    return "<1e-4" if value < 1e-4 else f"{value:.2g}"


def mean_text(summary: stats.Summary, compact: bool = False) -> str:
    if summary.n == 0:
        return "—"
    if summary.has_ci:
        return f"{num(summary.mean)} [{num(summary.low)}, {num(summary.high)}]"
    if summary.n == 2 and summary.std:
        values = ", ".join(num(v, digits=3) for v in summary.values)
        return f"{num(summary.mean)} ({values})" if compact else \
            f"{num(summary.mean)} (seeds: {values}; {summary.note})"
    short = {stats.ONE_SEED: "1 seed", stats.NO_SPREAD: "all seeds equal"}.get(summary.note, summary.note)
    return f"{num(summary.mean)} ({short if compact else summary.note})"


def delta_text(row: Row, compact: bool = False) -> str:
    if row.ratio is not None:
        return f"x{row.ratio:.3g}"
    paired = row.paired
    if paired is None:
        return ""
    if paired.has_ci:
        kind = f" {INTERVAL_SHORT[paired.interval]}" if compact else ""
        return f"{num(paired.delta, True)} [{num(paired.low, True)}, {num(paired.high, True)}]{kind}"
    if paired.n == 2:
        values = ", ".join(num(v, True, 3) for v in paired.differences)
        return f"{num(paired.delta, True)} ({values})" if compact else \
            f"{num(paired.delta, True)} (per seed: {values}; {paired.note})"
    short = {stats.ONE_SEED: "1 seed"}.get(paired.note, "same every seed")
    return f"{num(paired.delta, True)} ({short if compact else paired.note})"


def p_text(row: Row) -> str:
    paired = row.paired
    if paired is None or paired.n < 2:
        return ""
    return f"{p_value(paired.p_t)} / {p_value(paired.p_permutation)}"


def sign_text(row: Row) -> str:
    paired = row.paired
    if paired is None or paired.n < 2:
        return ""
    return f"{paired.wins}/{paired.losses} (p {p_value(paired.p_sign)})"


def paper_text(row: Row, compact: bool = False) -> list[str]:
    """The reference value and our gap to it (two cells, or one ``paper (gap)`` cell on screen)."""
    if row.paper is None or row.gap is None:
        return [""] if compact else ["", ""]
    paper, gap = num(row.paper, digits=6), num(row.gap, signed=True, digits=3)
    return [f"{paper} ({gap})"] if compact else [paper, gap]


def table_rows(comparison: Comparison, section: str, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and cells of one section: full names for markdown, short ones on screen; the paper's value and our
    gap beside the mean when the suite's reference has a value in this section."""
    rows = [row for row in comparison.rows if row.section == section]
    versus = f"vs {comparison.baseline}" + (" (ratio)" if section == "cost" else " Δ [95% CI]")
    referenced = comparison.reference is not None and any(r.paper is not None for r in rows)
    scale = num(comparison.reference.scale) if comparison.reference is not None else ""
    if compact:
        header = ["metric", "ckpt", "method", "n", "mean [95% CI]", *(["paper (gap)"] if referenced else []),
                  versus, "p seeds t / perm"]
        cells = [[short_name(r.metric), CHECKPOINT_SHORT.get(r.checkpoint, ""), r.group.label, str(r.summary.n),
                  mean_text(r.summary, True), *(paper_text(r, True) if referenced else []), delta_text(r, True),
                  p_text(r)] for r in rows]
        return header, cells
    header = ["metric", "checkpoint", "method", "n", "mean [95% CI]",
              *(["paper", f"gap (mean ×{scale} − paper)"] if referenced else []), versus, "interval",
              "p over seeds: t / perm.", "seeds +/− (sign test)"]
    cells = [[r.metric, CHECKPOINT_LABELS.get(r.checkpoint, ""), r.group.label, str(r.summary.n),
              mean_text(r.summary), *(paper_text(r) if referenced else []), delta_text(r),
              r.paired.interval if r.paired else "", p_text(r), sign_text(r)]
             for r in rows]
    return header, cells


def reference_lines(comparison: Comparison) -> list[str]:
    """Where the reference values come from and how the gap is formed; reference metrics no row carries."""
    reference = comparison.reference
    if reference is None:
        return []
    lines = [f"Paper values: {reference.source}. Gap = our mean × {num(reference.scale)} − paper value (positive: "
             f"ours is higher); it compares a mean over our seeds with the paper's number, without an interval."]
    missing = comparison.unmatched_references()
    if missing:
        lines.append(f"No compared run has the referenced metric(s) {', '.join(missing)} (not run yet, or the "
                     "checkpoint selection was changed, e.g. evaluation.select_on).")
    return lines


def power_lines(comparison: Comparison) -> list[str]:
    """For the headline metric, per method and checkpoint: the smallest difference this many seeds detect, and
    the seeds a difference of the observed size would need."""
    lines, without = [], Counter()
    for row in comparison.headline_rows():
        paired = row.paired
        if paired is None:
            continue
        where = f"`{row.group.label}`, {CHECKPOINT_LABELS.get(row.checkpoint, row.checkpoint)}"
        if paired.power is None:
            without["one seed" if paired.n < 2 else "no spread in the per-seed differences"] += 1
            continue
        power = paired.power
        needed = (f"a difference of the observed size ({num(paired.delta, True, 3)}) would need about "
                  f"{power.seeds_needed} seeds" if power.seeds_needed else
                  f"the observed difference ({num(paired.delta, True, 3)}) would need more than "
                  f"{stats.MAX_SEEDS_SEARCHED} seeds")
        lines.append(f"- {where}: with {power.n} seeds (SD of per-seed differences {num(power.sd, digits=3)}) a "
                     f"paired t-test detects |Δ| ≥ {num(power.detectable, digits=3)} (alpha {stats.ALPHA}, power "
                     f"{stats.POWER}); {needed}.")
    return lines + [f"- no power estimate for {count} method/checkpoint row{'s' if count > 1 else ''} ({reason})."
                    for reason, count in without.items()]


def within_seed_rows(comparison: Comparison) -> list[list[str]]:
    out = []
    for row in comparison.rows:
        for w in row.paired.within if row.paired else ():
            counts = f"{w.method_only} / {w.baseline_only}" if w.method_only is not None else ""
            out.append([row.metric, CHECKPOINT_LABELS.get(row.checkpoint, ""), row.group.label, str(w.seed),
                        str(w.n_questions), counts, f"{p_value(w.p_value)} ({w.test})"])
    return out


def markdown(comparison: Comparison) -> str:
    lines = [f"# {comparison.title}", "",
             f"Store `{comparison.store}`; baseline `{comparison.baseline}`; "
             f"{sum(len(g.runs) for g in comparison.groups)} finished trials in {len(comparison.groups)} groups; "
             f"runs from commit {', '.join(f'`{c[:12]}`' for c in comparison.commits) or 'unknown'}; written "
             f"{datetime.datetime.now().isoformat(timespec='seconds')}.", "", METHODS_TEXT, ""]
    if comparison.groups and not any(g.method == comparison.baseline for g in comparison.groups):
        lines += [f"> The baseline `{comparison.baseline}` has no finished trials: no differences or p-values.", ""]
    if any(row.checkpoint == "best_on_test" for row in comparison.rows):
        lines += ["> **best_on_test** rows come from a checkpoint selected on the TEST split (the MuToR paper's "
                  "protocol for GSM8K): optimistic, not a held-out estimate.", ""]
    lines += [f"> {line}" for line in reference_lines(comparison)] + ([""] if comparison.reference else [])
    power = power_lines(comparison)
    if power and comparison.headline:
        lines += [f"## Power (headline metric `{comparison.headline}`: {human_label(comparison.headline)})", "",
                  "A difference below the detectable size is *not shown*, which is not the same as *absent*.", "",
                  *power, ""]
    for section in SECTIONS:
        header, cells = table_rows(comparison, section)
        if not cells:
            continue
        lines += [f"## {section.capitalize()}", ""]
        if section == "per-horizon accuracy":
            lines += ["Held-out teacher-forced accuracy of each predictor: `acc/ntp` is horizon 1, `acc/h{k}` the "
                      "predictor of the token k steps ahead.", ""]
        lines += md_table(header, cells) + [""]
    within = within_seed_rows(comparison)
    if within:
        lines += ["## Within-seed evidence (conditional on these trained models)", "",
                  "Per seed, the method's trained model against the baseline's on the same test questions: McNemar's "
                  "exact test on per-question correctness (a sign-flip test for graded scores). It says whether "
                  "these two models differ on these questions, not whether the objective does; the seed-level "
                  "tests above answer that.", ""]
        lines += md_table(["metric", "checkpoint", "method", "seed", "questions", "only method / only baseline "
                           "right", "p"], within) + [""]
    if comparison.excluded:
        lines += ["## Trials not included", ""] + md_table(["trial", "status", "reason"],
                                                            [list(e) for e in comparison.excluded]) + [""]
    return "\n".join(lines)


def md_table(header: list[str], cells: list[list[str]]) -> list[str]:
    def escape(text: object) -> str:
        return str(text).replace("|", "\\|")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(escape(c) for c in row) + " |" for row in cells]


CSV_COLUMNS = ["section", "checkpoint", "checkpoint_label", "metric", "method", "cell", "n", "seeds", "values",
               "mean", "ci_low", "ci_high", "interval", "std", "note", "baseline", "delta", "delta_ci_low",
               "delta_ci_high", "delta_interval", "delta_note", "differences", "p_t", "p_permutation", "p_sign",
               "seeds_higher", "seeds_lower", "within_seed", "detectable_difference", "seeds_needed",
               "ratio_to_baseline", "reference_value", "reference_scale", "gap_to_reference"]


def _csv_row(comparison: Comparison, row: Row) -> list[Any]:
    s, p = row.summary, row.paired
    seeds = " ".join(str(seed) for seed in row.seeds)
    cells: list[Any] = [row.section, row.checkpoint, CHECKPOINT_LABELS.get(row.checkpoint, ""), row.metric,
                        row.group.method, row.group.cell, s.n, seeds, " ".join(repr(v) for v in s.values), s.mean,
                        s.low, s.high, s.interval, s.std, s.note, comparison.baseline]
    if p is None:
        cells += [""] * 14
    else:
        within = " ".join(f"{w.seed}:{w.p_value:.4g}" + (f"({w.method_only}/{w.baseline_only})"
                                                          if w.method_only is not None else "") for w in p.within)
        cells += [p.delta, p.low, p.high, p.interval, p.note, " ".join(repr(d) for d in p.differences), p.p_t,
                  p.p_permutation, p.p_sign, p.wins, p.losses, within,
                  p.power.detectable if p.power else "", (p.power.seeds_needed or "") if p.power else ""]
    cells.append("" if row.ratio is None else row.ratio)
    if row.paper is None or comparison.reference is None:
        return cells + ["", "", ""]
    return cells + [row.paper, comparison.reference.scale, row.gap]


def write_csv(comparison: Comparison, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in comparison.rows:
            writer.writerow(_csv_row(comparison, row))


def print_comparison(console: Any, comparison: Comparison, written: list[Path]) -> None:
    """The scores, per-horizon and cost tables on screen, in at most 120 columns."""
    from rich.console import Console
    from rich.table import Table

    if console.width > TERMINAL_WIDTH:
        console = Console(file=console.file, highlight=False, width=TERMINAL_WIDTH, soft_wrap=False,
                          force_terminal=console.is_terminal)
    for section in ("scores", "per-horizon accuracy", "cost"):
        header, cells = table_rows(comparison, section, compact=True)
        if cells:
            table = Table(title=f"{comparison.title}: {section}", title_justify="left")
            for column in header:
                table.add_column(column, overflow="fold")
            for cells_row in cells:
                table.add_row(*cells_row, style="red" if "TEST" in cells_row[1] else None)
            console.print(table)
    console.print("Intervals over seeds (seed-boot: percentile bootstrap over seeds; 2-level: seeds and questions; "
                  "t: Student-t); p over seeds: paired t / exact permutation. Details: compare.md.")
    for line in reference_lines(comparison):
        console.print(line, markup=False)  # a source may hold brackets
    for line in power_lines(comparison):
        console.print(line)
    if comparison.groups and not any(g.method == comparison.baseline for g in comparison.groups):
        console.print(f"[yellow]baseline {comparison.baseline!r} has no finished trials: no p-values[/]")
    if comparison.excluded:
        console.print("[yellow]not included:[/] " + "; ".join(f"{t} ({s}{': ' + r if r else ''})"
                                                               for t, s, r in comparison.excluded))
    if written:
        console.print(f"written: {', '.join(str(p) for p in written)}")
