"""The tables of ``mtp-bench steps``: steps-, tokens-, FLOPs- and seconds-to-accuracy per method with seeds
paired against the baseline, the curve over training, final metrics with the seed as the unit, a per-trial table
and a decision rule on the last evaluation (for bounded searches such as ``suites/star_graph_search.yaml``).

Statistics (the rules of ``mtp-bench compare``, :mod:`mtp_bench.analysis.stats`): per method, the mean over seeds
with a 95% Student-t interval over seeds clipped at 0 (these are counts) when every seed reached the threshold;
otherwise the mean with unreached seeds counted at their last evaluation, shown as a lower bound "≥". No interval
below 3 seeds, anywhere: the curve table shows the mean alone, and two paired seeds show both differences labelled
as such. Against the baseline, seed s with seed s: the mean paired difference with a t-interval over the seeds where
both reached it, and an exact two-sided sign test over the seeds whose order is known. A seed where only one side
reached the threshold counts for that side only when its value is at or below the other side's bound (its value at
its last evaluation): in steps it always is; in tokens or FLOPs, a method processing more positions per step can
reach it at the baseline's last step having used more than the baseline had by then (undecided, left out of the
test). The exact sign test cannot reach p < 0.05 below 6 seeds (its smallest p is 2/2^n: 0.0625 at 5). Final metrics
(``--seed-paired``) use :func:`mtp_bench.analysis.stats.compare_seeds` and the verdict rule of
:mod:`mtp_bench.analysis.verdict`, as ``mtp-bench compare`` does.

    mtp-bench steps suites/arithmetic.yaml --threshold 0.5 --threshold 0.9 --output results/arithmetic/steps.md
    mtp-bench steps suites/star_graph_search.yaml --no-steps \\
        --last val/star_graph/first_step_accuracy --last val/star_graph/full_path_accuracy \\
        --final last/test/star_graph/full_path_accuracy --rule val/star_graph/first_step_accuracy=0.10
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from mtp_bench.analysis import stats
from mtp_bench.analysis.names import NON_NEGATIVE, bounds
from mtp_bench.analysis.notes import num, p_value
from mtp_bench.analysis.render import md_table
from mtp_bench.analysis.runs import Excluded
from mtp_bench.analysis.steps import TrialCurve, baseline_of, crossing, groups_of, who_first
from mtp_bench.analysis.verdict import decide


# ---------------------------------------------------------------------------------------------- formatting ----
def fmt(value: float | None, kind: str = "steps") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if kind in ("steps", "seconds"):
        return f"{value:.0f}"
    return f"{value:.3g}"


def interval_text(values: list[float], kind: str, censored: int) -> str:
    interval = stats.summarise(values, NON_NEGATIVE)  # steps, positions, FLOPs, seconds: never below 0
    if censored:
        return f"≥ {fmt(interval.mean, kind)} ({censored} not reached)"
    if not interval.has_ci:
        return f"{fmt(interval.mean, kind)} ({interval.note})"
    return f"{fmt(interval.mean, kind)} [{fmt(interval.low, kind)}, {fmt(interval.high, kind)}]"


def signed(value: float, kind: str) -> str:
    return f"{value:+.0f}" if kind in ("steps", "seconds") else f"{value:+.3g}"


def cell_title(cell: str) -> str:
    return cell or "(single cell)"


# --------------------------------------------------------------------------------------------- sections ----
UNITS = {"steps": "optimiser steps", "tokens": "positions processed (registers included)",
         "flops": "training FLOPs (6·params·positions)", "seconds": "training seconds (shared machine)"}


def steps_row(members: list[TrialCurve], base: list[TrialCurve] | None, threshold: float, kind: str) -> list[str]:
    """Per seed, the mean (a lower bound "≥" when a seed never reached the threshold), and against the baseline."""
    mine = {t.seed: crossing(t, threshold, kind) for t in members}
    per_seed = " ".join(f"{seed}:" + (">" if censored and value is not None else "") + fmt(value, kind)
                        for seed, (value, censored) in mine.items())
    known = [(value, censored) for value, censored in mine.values() if value is not None]
    summary = interval_text([v for v, _ in known], kind, sum(c for _, c in known)) if known else "—"
    if base is None or base is members:
        return [per_seed, summary, "", ""]
    theirs = {t.seed: crossing(t, threshold, kind) for t in base}
    seeds = [seed for seed in mine if seed in theirs]
    sign = partial(signed, kind=kind)
    diffs = [mine[s][0] - theirs[s][0] for s in seeds if mine[s][0] is not None and theirs[s][0] is not None
             and not mine[s][1] and not theirs[s][1]]
    versus = ""
    if diffs:
        d = stats.summarise(diffs)
        if d.has_ci:
            versus = f"{sign(d.mean)} [{sign(d.low)}, {sign(d.high)}] ({len(diffs)} pairs)"
        elif len(diffs) == 2 and d.std:
            versus = f"{sign(d.mean)} (2 pairs: {', '.join(sign(x) for x in diffs)}; no interval)"
        else:
            versus = f"{sign(d.mean)} ({len(diffs)} pair{'s' if len(diffs) > 1 else ''}; {d.note})"
    orders = [who_first(mine[s], theirs[s]) for s in seeds]
    earlier, later = orders.count(-1), orders.count(1)
    p = stats.sign_test(earlier, later)
    p_text = (f"{earlier} earlier / {later} later / {len(seeds) - earlier - later} tie, neither or undecided"
              + (f"; sign p={p:.3g}" if not math.isnan(p) else ""))
    return [per_seed, summary, versus, p_text]


def steps_section(trials: list[TrialCurve], metric: str, threshold: float, baseline: str,
                  kinds: list[str]) -> list[str]:
    groups = groups_of(trials)
    lines = [f"### First evaluation at which `{metric}` ≥ {threshold:g}", ""]
    fewest = min((len(members) for members in groups.values()), default=0)
    if 0 < fewest < stats.MIN_SEEDS_EXACT:
        lines += [f"The exact sign test cannot reach p < {stats.ALPHA} below {stats.MIN_SEEDS_EXACT} seeds (smallest "
                  f"p with {fewest}: {stats.smallest_exact_p(fewest):.3g}).", ""]
    for kind in kinds:
        rows = [[cell_title(cell) if cell else "", method, str(len(members)),
                 *steps_row(members, baseline_of(groups, cell, baseline), threshold, kind)]
                for (cell, method), members in groups.items()]
        header = ["cell", "method", "n", "per seed (seed:value; >bound: not reached)", "mean [95% t-interval]",
                  f"Δ vs {baseline} (paired, both reached; < 0: earlier)", "seeds earlier/later than baseline"]
        if not any(t.cell for t in trials):  # one cell: no cell column
            header, rows = header[1:], [row[1:] for row in rows]
        lines += [f"**In {UNITS[kind]}.**", ""] + md_table(header, rows) + [""]
    return lines


def curve_section(trials: list[TrialCurve], metric: str, every: int | None) -> list[str]:
    groups = groups_of(trials)
    bounded = bounds(metric)
    steps = sorted({s for t in trials for s in t.curve})
    if every and steps:
        steps = [s for s in steps if s % every == 0 or s == steps[-1]]
    header = ["step"] + [f"{m}" + (f" [{c}]" if c else "") for c, m in groups]
    rows = []
    for step in steps:
        row = [str(step)]
        for members in groups.values():
            values = [t.curve[step] for t in members if step in t.curve]
            i = stats.summarise(values, bounded)
            row.append("—" if i.n == 0 else f"{i.mean:.3f}" + (f" [{i.low:.3f}, {i.high:.3f}]" if i.has_ci else ""))
        rows.append(row)
    return ([f"### `{metric}` over training (mean over seeds [95% t-interval over seeds, clipped to the metric's "
             "range]; the mean alone below 3 seeds or without spread)", ""] + md_table(header, rows) + [""])


def seed_paired_section(trials: list[TrialCurve], metric: str, baseline: str) -> list[str]:
    """A final metric with the seed as the unit: per-seed values, the mean with its interval over seeds, and the
    paired difference against the baseline over seeds (t-interval, paired t and exact permutation p, wins/losses
    with an exact sign test, and the verdict), as ``mtp-bench compare`` computes them without per-question
    outcomes."""
    groups = groups_of(trials)
    bounded = bounds(metric)
    rows = []
    for (cell, method), members in groups.items():
        values = {t.seed: t.metrics[metric] for t in members if metric in t.metrics}
        summary = stats.summarise(list(values.values()), bounded)
        mean = (f"{num(summary.mean, digits=3)} [{num(summary.low, digits=3)}, {num(summary.high, digits=3)}]"
                if summary.has_ci else f"{num(summary.mean, digits=3)} ({summary.note})" if summary.n else "—")
        versus = tests = ""
        base = baseline_of(groups, cell, baseline)
        if base is not None and members is not base:
            theirs = {t.seed: t.metrics[metric] for t in base if metric in t.metrics}
            seeds = [seed for seed in values if seed in theirs]
            if seeds:
                d = stats.compare_seeds(seeds, [values[s] for s in seeds], [theirs[s] for s in seeds], bounded)
                versus = (f"{num(d.delta, True, 3)} [{num(d.low, True, 3)}, {num(d.high, True, 3)}] ({d.interval})"
                          if d.has_ci else f"{num(d.delta, True, 3)} ({d.note})")
                tests = (f"paired t p={p_value(d.p_t)}, exact permutation p={p_value(d.p_permutation)}; "
                         f"{d.wins} higher / {d.losses} lower, sign p={p_value(d.p_sign)}; " if d.n >= 2 else "")
                tests += f"→ {decide(d).text}"
        per_seed = " ".join(f"{seed}:{value:.3f}" for seed, value in values.items())
        rows.append([cell_title(cell), method, str(summary.n), per_seed, mean, versus, tests])
    header = ["cell", "method", "n", "per seed", "mean [95% t-interval]", f"Δ vs {baseline} over seeds [95% CI]",
              "tests and verdict"]
    if not any(t.cell for t in trials):
        header, rows = header[1:], [row[1:] for row in rows]
    return ([f"### `{metric}` with the seed as the unit (paired by seed against `{baseline}`)", ""]
            + md_table(header, rows) + [""])


def per_trial_section(trials: list[TrialCurve], last: list[str], final: list[str]) -> list[str]:
    header = ["cell", "method", "seed", "last eval step"] + [f"{m} (last eval)" for m in last] + final
    rows = []
    for t in trials:
        row = [cell_title(t.cell), t.method, str(t.seed), str(t.last_step)]
        for name in last:
            history = t.cumulative.get(name) or {}
            row.append(f"{history[max(history)]:.3f}" if history else "—")
        for name in final:
            row.append(f"{t.metrics[name]:.3f}" if name in t.metrics else "—")
        rows.append(row)
    return ["### Every trial", ""] + md_table(header, rows) + [""]


def rule_section(trials: list[TrialCurve], metric: str, delta: float, baseline: str) -> list[str]:
    """Per cell: does any method's last-evaluation value, averaged over seeds, beat the baseline's by ≥ delta?"""
    groups = groups_of(trials)
    cells = sorted({t.cell for t in trials})
    rows = []
    for cell in cells:
        base = baseline_of(groups, cell, baseline)
        if not base:
            rows.append([cell_title(cell), "—", "", "no baseline trial", ""])
            continue
        base_values = [t.cumulative[metric][max(t.cumulative[metric])] for t in base if t.cumulative.get(metric)]
        if not base_values:
            rows.append([cell_title(cell), "—", "", f"no baseline `{metric}`", ""])
            continue
        base_value = float(np.mean(base_values))
        gaps = []
        for (c, method), members in groups.items():
            if c != cell or method == baseline:
                continue
            values = [t.cumulative[metric][max(t.cumulative[metric])] for t in members if t.cumulative.get(metric)]
            if values:
                gaps.append((method, float(np.mean(values)) - base_value))
        separates = [m for m, g in gaps if g >= delta]
        flops = [t.metrics.get("train/flops_total") for t in base]
        rows.append([cell_title(cell), f"{base_value:.3f}", ", ".join(f"{m} {g:+.3f}" for m, g in gaps),
                     ("SEPARATES (" + ", ".join(separates) + ")") if separates else "no separation",
                     fmt(float(np.mean([f for f in flops if f])) if any(flops) else None, "flops")])
    return ([f"### Decision rule: a cell separates when a method's `{metric}` at the last evaluation beats "
             f"`{baseline}`'s by ≥ {delta:g}", ""]
            + md_table(["cell", f"{baseline} (last eval)", "method − baseline", "verdict",
                        f"{baseline} training FLOPs"], rows) + [""])


def report(suite: str, command: str, trials: list[TrialCurve], excluded: list[Excluded], metric: str, baseline: str,
           *, thresholds: list[float], kinds: list[str], no_steps: bool = False, curve_every: int | None = None,
           seed_paired: list[str] = (), last: list[str] = (), final: list[str] = (),
           rule: tuple[str, float] | None = None) -> str:
    """The whole markdown report of ``mtp-bench steps``."""
    lines = [f"## {suite}: learning curves from the MLflow store", "", f"`{command}`", "",
             f"{len(trials)} finished trials; periodic metric `{metric}`; baseline `{baseline}`.", ""]
    if not no_steps:
        for threshold in thresholds:
            lines += steps_section(trials, metric, threshold, baseline, kinds)
        if curve_every != 0:
            lines += curve_section(trials, metric, curve_every)
    for name in seed_paired:
        lines += seed_paired_section(trials, name, baseline)
    if last or final:
        lines += per_trial_section(trials, list(last), list(final))
    if rule:
        lines += rule_section(trials, rule[0], rule[1], baseline)
    if excluded:
        lines += ["### Trials not included", ""] + md_table(["trial", "status", "reason"],
                                                            [list(e) for e in excluded]) + [""]
    return "\n".join(lines)
