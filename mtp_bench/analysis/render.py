"""A comparison as text: the markdown report (``compare.md``), the CSV with every number and full metric names
(``compare.csv``) and the on-screen tables, which fit 120 columns (short metric names, wrapped cells), each followed
by one verdict line per method (:mod:`mtp_bench.analysis.verdict`). Where the suite has a ``reference:`` section,
each table with a referenced metric gets the paper's value and our gap beside the mean. The sentences around the
tables live in :mod:`mtp_bench.analysis.notes`."""

from __future__ import annotations

import csv
import datetime
import textwrap
from pathlib import Path
from typing import Any

from mtp_bench.analysis import notes, stats
from mtp_bench.analysis.comparison import Comparison, Row
from mtp_bench.analysis.names import CHECKPOINT_LABELS, CHECKPOINT_SHORT, SECTIONS, bounds, human_label, short_name
from mtp_bench.analysis.notes import num, p_value

TERMINAL_WIDTH = 120
METHODS_TEXT = (
    "**How to read this.** The seed is the unit: each seed is a separately trained model. *mean [95% CI]*: mean "
    "over seeds with a 95% Student-t interval over seeds, clipped to the metric's range (accuracies and rates stay "
    "inside [0, 1]; losses and costs never go below 0). No interval below 3 seeds: one or two seeds show their "
    "values, labelled as such. *Δ*: method minus baseline, seed s against seed s, the mean of the per-seed "
    "differences, with a 95% t-interval over those differences (clipped to [−1, 1] for proportions; column "
    "*interval* says which). *p over seeds*: paired t-test / exact paired permutation test; *seeds +/−*: seeds where "
    "the method scored higher / lower, with the exact sign test. The exact tests cannot reach p < 0.05 below 6 seeds "
    "(their smallest p is 2/2^n). *Verdict*: a difference is **shown** when the exact permutation p < 0.05 and the "
    "t-interval excludes 0 (so never below 6 seeds); when every seed gives the same difference, the exact test "
    "alone. *Not shown* means these seeds cannot tell, not that there is no difference. Simulated at 3 and 5 seeds, "
    "the t-interval covers ≥ 93% when per-seed values vary smoothly (unimodal, moderately skewed); when each seed "
    "either learns the task or does not, no interval from a few seeds keeps its promise. *Within-seed evidence*: "
    "what the test questions say about these trained models — McNemar's test per seed, and a two-level bootstrap of "
    "Δ (seeds and test questions resampled) that shows how much of Δ test-set sampling could explain; it "
    "under-covers at few seeds and is not the headline interval.")


def interval_label(row: Row) -> str:
    """What the Δ interval of a row is: ``t over seeds``, with the range it was clipped to when it was."""
    paired = row.paired
    if paired is None or not paired.has_ci:
        return ""
    limits = stats.difference_bounds(bounds(row.metric))
    return paired.interval + (f", clipped to [{num(limits[0], digits=3)}, {num(limits[1], digits=3)}]"
                              if paired.clipped and limits else "")


def mean_text(summary: stats.Summary, compact: bool = False) -> str:
    if summary.n == 0:
        return "—"
    if summary.has_ci:
        return f"{num(summary.mean)} [{num(summary.low)}, {num(summary.high)}]"
    if summary.n == 2 and summary.std:
        values = ", ".join(num(v, digits=3) for v in summary.values)
        return f"{num(summary.mean)} (seeds {values}; {'no interval' if compact else summary.note})"
    short = {stats.ONE_SEED: "1 seed", stats.NO_SPREAD: "all seeds equal"}.get(summary.note, summary.note)
    return f"{num(summary.mean)} ({short if compact else summary.note})"


def delta_text(row: Row, compact: bool = False) -> str:
    if row.ratio is not None:
        return f"x{row.ratio:.3g}"
    paired = row.paired
    if paired is None:
        return ""
    if paired.has_ci:
        return f"{num(paired.delta, True)} [{num(paired.low, True)}, {num(paired.high, True)}]"
    if paired.n == 2:
        values = ", ".join(num(v, True, 3) for v in paired.differences)
        return f"{num(paired.delta, True)} (per-seed Δ {values}; {'no interval' if compact else paired.note})"
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
              mean_text(r.summary), *(paper_text(r) if referenced else []), delta_text(r), interval_label(r),
              p_text(r), sign_text(r)]
             for r in rows]
    return header, cells


def within_seed_rows(comparison: Comparison) -> list[list[str]]:
    out = []
    for row in comparison.rows:
        for w in row.paired.within if row.paired else ():
            counts = f"{w.method_only} / {w.baseline_only}" if w.method_only is not None else ""
            out.append([row.metric, CHECKPOINT_LABELS.get(row.checkpoint, ""), row.group.label, str(w.seed),
                        str(w.n_questions), counts, f"{p_value(w.p_value)} ({w.test})"])
    return out


def two_level_rows(comparison: Comparison) -> list[list[str]]:
    out = []
    for row in comparison.rows:
        paired = row.paired
        if paired is not None and paired.has_two_level:
            low, high = paired.two_level
            out.append([row.metric, CHECKPOINT_LABELS.get(row.checkpoint, ""), row.group.label, str(paired.n),
                        num(paired.delta, True), f"[{num(low, True)}, {num(high, True)}]"])
    return out


def markdown(comparison: Comparison) -> str:
    commits = comparison.by_commit
    lines = [f"# {comparison.title}", "",
             f"Store `{comparison.store}`; baseline `{comparison.baseline}`; "
             f"{sum(len(g.runs) for g in comparison.groups)} finished trials in {len(comparison.groups)} groups; "
             f"runs from commit{'s' if len(commits) > 1 else ''} "
             f"{', '.join(f'`{c[:notes.SHORT_HASH]}`' for c in comparison.commits) or 'unknown'}; written "
             f"{datetime.datetime.now().isoformat(timespec='seconds')}.", ""]
    mixed = notes.commit_lines(comparison)
    if mixed:
        lines += [f"> **Mixed code versions.** {mixed[0]}", ">", *[f"> - {line}" for line in mixed[1:-1]], ">",
                  f"> {mixed[-1]}", ""]
    verdicts = notes.verdict_lines(comparison)
    if verdicts:
        lines += ["## Verdict", "", notes.verdict_header(comparison), "", *[f"- {line}" for line in verdicts], ""]
    lines += [METHODS_TEXT, ""]
    if comparison.groups and not any(g.method == comparison.baseline for g in comparison.groups):
        lines += [f"> The baseline `{comparison.baseline}` has no finished trials: no differences or p-values.", ""]
    if any(row.checkpoint == "best_on_test" for row in comparison.rows):
        lines += ["> **best_on_test** rows come from a checkpoint selected on the TEST split (the MuToR paper's "
                  "protocol for GSM8K): optimistic, not a held-out estimate.", ""]
    lines += [f"> {line}" for line in notes.reference_lines(comparison)] + ([""] if comparison.reference else [])
    power = notes.power_lines(comparison)
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
    within, two_level = within_seed_rows(comparison), two_level_rows(comparison)
    if within or two_level:
        lines += ["## Within-seed evidence (conditional on these trained models)", ""]
    if two_level:
        lines += ["Δ with the test questions resampled as well as the seeds (two-level percentile bootstrap; one "
                  "draw of questions shared by every seed): how much of Δ test-set sampling could explain. With few "
                  "seeds it under-covers (0.74–0.83 simulated at 3 seeds), so it is evidence about these test "
                  "questions, not the interval of Δ.", ""]
        lines += md_table(["metric", "checkpoint", "method", "seeds", "Δ", "two-level bootstrap 95%"],
                          two_level) + [""]
    if within:
        lines += ["Per seed, the method's trained model against the baseline's on the same test questions: McNemar's "
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
               "seeds_higher", "seeds_lower", "verdict", "delta_two_level_low", "delta_two_level_high", "within_seed",
               "detectable_difference", "seeds_needed", "ratio_to_baseline", "reference_value", "reference_scale",
               "gap_to_reference"]


def _csv_row(comparison: Comparison, row: Row) -> list[Any]:
    s, p = row.summary, row.paired
    seeds = " ".join(str(seed) for seed in row.seeds)
    cells: list[Any] = [row.section, row.checkpoint, CHECKPOINT_LABELS.get(row.checkpoint, ""), row.metric,
                        row.group.method, row.group.cell, s.n, seeds, " ".join(repr(v) for v in s.values), s.mean,
                        s.low, s.high, s.interval, s.std, s.note, comparison.baseline]
    if p is None:
        cells += [""] * 17
    else:
        within = " ".join(f"{w.seed}:{w.p_value:.4g}" + (f"({w.method_only}/{w.baseline_only})"
                                                          if w.method_only is not None else "") for w in p.within)
        cells += [p.delta, p.low, p.high, interval_label(row), p.note, " ".join(repr(d) for d in p.differences),
                  p.p_t, p.p_permutation, p.p_sign, p.wins, p.losses, notes.row_verdict(row), *p.two_level, within,
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


def _wrapped(text: str, indent: str = "  ") -> str:
    return "\n".join(textwrap.wrap(text, TERMINAL_WIDTH, subsequent_indent=indent, break_on_hyphens=False))


def print_comparison(console: Any, comparison: Comparison, written: list[Path]) -> None:
    """The scores, per-horizon and cost tables on screen, in at most 120 columns, then the notes and one verdict
    line per method; a warning before the tables and again before the verdict when the runs mix commits."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if console.width > TERMINAL_WIDTH:
        console = Console(file=console.file, highlight=False, width=TERMINAL_WIDTH, soft_wrap=False,
                          force_terminal=console.is_terminal)
    mixed = notes.commit_lines(comparison)
    for line in mixed:
        console.print(_wrapped(line), style="bold red", markup=False)
    for section in ("scores", "per-horizon accuracy", "cost"):
        header, cells = table_rows(comparison, section, compact=True)
        if cells:
            table = Table(title=f"{comparison.title}: {section}", title_justify="left")
            for column in header:
                table.add_column(column, overflow="fold")
            for cells_row in cells:  # as plain text: a label such as "ntp [train.max_steps=400]" is no markup
                table.add_row(*map(Text, cells_row), style="red" if "TEST" in cells_row[1] else None)
            console.print(table)
    console.print("Intervals: 95% Student-t over seeds, clipped to the metric's range; none below 3 seeds. "
                  "p over seeds: paired t / exact permutation. Details: compare.md.")
    for line in notes.reference_lines(comparison):
        console.print(line, markup=False)  # a source may hold brackets
    for line in notes.power_lines(comparison):
        console.print(_wrapped(line), markup=False)
    if comparison.groups and not any(g.method == comparison.baseline for g in comparison.groups):
        console.print(f"[yellow]baseline {comparison.baseline!r} has no finished trials: no p-values[/]")
    if comparison.excluded:
        console.print("[yellow]not included:[/] " + "; ".join(f"{t} ({s}{': ' + r if r else ''})"
                                                               for t, s, r in comparison.excluded), markup=True)
    verdicts = notes.verdict_lines(comparison)
    if verdicts:
        console.print()
        if mixed:
            hashes = ", ".join(commit[:notes.SHORT_HASH] for commit in comparison.by_commit)
            console.print(_wrapped(f"Mixed code versions: {hashes} (listed above)."), style="bold red", markup=False)
        console.print(_wrapped(notes.verdict_header(comparison)), style="bold", markup=False)
        for line in verdicts:
            console.print(_wrapped(line, "    "), markup=False)
    if written:
        console.print(f"written: {', '.join(str(p) for p in written)}")
