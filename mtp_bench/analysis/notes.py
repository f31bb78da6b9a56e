"""The sentences around a comparison's tables, shared by compare.md and the screen: number formats, the verdict
lines (:mod:`mtp_bench.analysis.verdict` decides), the power notes in the metric's own range, the warning when the
compared runs come from more than one commit, and where the paper's reference values come from."""

from __future__ import annotations

import math
from collections import Counter

from mtp_bench.analysis import stats
from mtp_bench.analysis.comparison import Comparison, Row
from mtp_bench.analysis.names import CHECKPOINT_LABELS, bounds
from mtp_bench.analysis.runs import UNKNOWN_COMMIT
from mtp_bench.analysis.verdict import RULE, decide

SHORT_HASH = 8  # characters of a commit hash people read


def num(value: float | None, signed: bool = False, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.{digits}g}" if signed else f"{value:.{digits}g}"


def p_value(value: float) -> str:
    if value != value:
        return "—"
    return "<1e-4" if value < 1e-4 else f"{value:.2g}"


def seeds_word(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds"


# ------------------------------------------------------------------------------------------------ verdict ----
def verdict_line(label: str, baseline: str, paired: stats.SeedComparison) -> str:
    """``mutor vs ntp: +0.12 [+0.05, +0.19] over 6 seeds, 6/6 higher, p = 0.031 → shown`` (p: exact permutation)."""
    text = f"{label} vs {baseline}: {num(paired.delta, True, 3)}"
    if paired.has_ci:
        text += f" [{num(paired.low, True, 3)}, {num(paired.high, True, 3)}]"
    elif paired.n == 2:
        text += f" (per-seed Δ {', '.join(num(d, True, 3) for d in paired.differences)}; no interval)"
    elif paired.note == stats.SAME_DIFFERENCE and paired.n > 1:
        text += " (the same every seed)"
    text += f" over {seeds_word(paired.n)}"
    if paired.n >= 2:
        text += f", {paired.wins}/{paired.n} higher" + (f", {paired.ties} tied" if paired.ties else "")
        text += f", p = {p_value(paired.p_permutation)}"
    return f"{text} → {decide(paired).text}"


def verdict_header(comparison: Comparison) -> str:
    checkpoint = CHECKPOINT_LABELS.get(comparison.headline_checkpoint or "", comparison.headline_checkpoint)
    return (f"Verdict on {comparison.headline} ({checkpoint}) against {comparison.baseline}; {RULE}; "
            f"interval: 95% t over seeds; p: exact permutation over seeds.")


def verdict_lines(comparison: Comparison) -> list[str]:
    """One line per method (and grid cell) against the baseline, on the headline metric and checkpoint."""
    return [verdict_line(row.group.label, comparison.baseline, row.paired) for row in comparison.verdict_rows()]


# -------------------------------------------------------------------------------------------------- power ----
def _range_text(metric: str) -> tuple[float, str] | None:
    """(largest possible |Δ|, how to say it) for metrics with a finite range."""
    limits = stats.difference_bounds(bounds(metric))
    return None if limits is None else (limits[1], f"|Δ| ≤ {num(limits[1], digits=3)}")


def power_lines(comparison: Comparison) -> list[str]:
    """For the headline metric, per method and checkpoint: the smallest difference a paired t-test detects at this
    many seeds (in words when no difference the metric can have is detectable), the seeds the observed difference
    would need, and what the exact tests can reach below ``MIN_SEEDS_EXACT`` seeds."""
    lines, without, fewest = [], Counter(), None
    for row in comparison.headline_rows():
        paired = row.paired
        if paired is None:
            continue
        fewest = paired.n if fewest is None else min(fewest, paired.n)
        where = f"`{row.group.label}`, {CHECKPOINT_LABELS.get(row.checkpoint, row.checkpoint)}"
        if paired.power is None:
            without["one seed" if paired.n < 2 else "no spread in the per-seed differences"] += 1
            continue
        power, limit = paired.power, _range_text(row.metric)
        needed = (f"a difference of the observed size ({num(paired.delta, True, 3)}) would need about "
                  f"{power.seeds_needed} seeds" if power.seeds_needed else
                  f"the observed difference ({num(paired.delta, True, 3)}) would need more than "
                  f"{stats.MAX_SEEDS_SEARCHED} seeds")
        if limit is not None and power.detectable is not None and power.detectable > limit[0]:
            detects = f"no difference this metric can have ({limit[1]}) is detectable by a paired t-test"
        else:
            detects = f"a paired t-test detects |Δ| ≥ {num(power.detectable, digits=3)}"
        lines.append(f"- {where}: with {power.n} seeds (SD of per-seed differences {num(power.sd, digits=3)}) "
                     f"{detects} (alpha {stats.ALPHA}, power {stats.POWER}); {needed}.")
    lines += [f"- no power estimate for {count} method/checkpoint row{'s' if count > 1 else ''} ({reason})."
              for reason, count in without.items()]
    if fewest is not None and fewest < stats.MIN_SEEDS_EXACT:
        floors = ", ".join(f"{stats.smallest_exact_p(n):.3g} at {n}" for n in range(2, stats.MIN_SEEDS_EXACT))
        lines.append(f"- These figures are for the paired t-test only. The exact tests (permutation, sign) cannot "
                     f"reach p < {stats.ALPHA} below {stats.MIN_SEEDS_EXACT} seeds, whatever the difference: their "
                     f"smallest possible p is 2/2^n ({floors} seeds); the fewest paired seeds here: {fewest}.")
    return lines


# ------------------------------------------------------------------------------------------------ commits ----
def seed_ranges(seeds: list[int | None]) -> str:
    """``0-3, 5`` for seeds 0, 1, 2, 3, 5."""
    known = sorted(s for s in seeds if s is not None)
    parts: list[list[int]] = []
    for seed in known:
        if parts and parts[-1][1] == seed - 1:
            parts[-1][1] = seed
        else:
            parts.append([seed, seed])
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in parts] + (["?"] if None in seeds else [])
    return ", ".join(text)


def commit_lines(comparison: Comparison) -> list[str]:
    """When the compared runs come from more than one commit: what comes from which (empty otherwise)."""
    by_commit = comparison.by_commit
    if len(by_commit) < 2:
        return []
    lines = [f"These runs come from {len(by_commit)} code versions: a difference between methods may be a "
             f"difference between commits."]
    for commit, pairs in by_commit.items():
        groups: dict[str, list[int | None]] = {}
        for label, seed in pairs:
            groups.setdefault(label, []).append(seed)
        name = commit if commit == UNKNOWN_COMMIT else commit[:SHORT_HASH]
        lines.append(f"{name}: " + "; ".join(f"{label} seed{'s' if len(seeds) > 1 else ''} {seed_ranges(seeds)}"
                                           for label, seeds in groups.items()))
    lines.append("Re-run the trials at one commit before reading the verdict (`mtp-bench run` without --resume "
                 "re-runs every trial; compare uses the newest run of each).")
    return lines


# ---------------------------------------------------------------------------------------------- reference ----
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


def row_verdict(row: Row) -> str:
    """The verdict column of compare.csv: every paired row decided by the same rule."""
    return decide(row.paired).text if row.paired is not None else ""
