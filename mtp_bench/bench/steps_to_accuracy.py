"""When does each method learn? Steps-, tokens-, FLOPs- and seconds-to-accuracy from the validation curves in the
MLflow store, with seeds paired against the baseline; plus a per-trial table and a threshold rule on the last
evaluation (for bounded searches such as ``suites/star_graph_search.yaml``).

Reads only what ``mtp-bench run`` recorded (the same trial selection as ``mtp-bench compare``: one finished run per
trial id of the suite). Per trial, the periodic metric (``--metric``, else ``<split>/<selection metric>`` with the
split the trial evaluated periodically: ``val``, or ``test`` without a validation split) is read at every evaluation
step; "steps to accuracy" is the first evaluation step at which it reaches ``--threshold`` (so it is known only to
the evaluation interval). Tokens (positions the model processed, registers included), FLOPs
(the loop's ``6 x parameters x positions`` estimate) and training seconds (wall clock, evaluation excluded; noisy on
a shared machine) are read from the cumulative ``train/tokens_processed``, ``train/flops`` and ``train/seconds``
histories at that step (linearly interpolated between the logged steps, never extrapolated past the last).

Statistics: per method, the mean over seeds with a 95% t-interval when every seed reached the threshold (otherwise
the mean with unreached seeds counted at the budget, shown as a lower bound "≥"); against the baseline, seed s with
seed s: the mean paired difference with a t-interval over the seeds where both reached it, and an exact two-sided
sign test (``scipy.stats.binomtest``) over the seeds whose order is known. A seed where only one side reached the
threshold counts for that side only when its value is at or below the other side's bound (its value at its last
evaluation): in steps it always is; in tokens or FLOPs, a method processing more positions per step can reach it at
the baseline's last step having used more than the baseline had by then (undecided, left out of the test). With 5 seeds the smallest possible sign-test p is 0.0625: it cannot reach 0.05.

    python -m mtp_bench.bench.steps_to_accuracy suites/arithmetic.yaml --threshold 0.5 --threshold 0.9 \\
        --output results/arithmetic/steps_to_accuracy.md
    python -m mtp_bench.bench.steps_to_accuracy suites/star_graph_search.yaml --no-steps \\
        --last val/star_graph/first_step_accuracy --last val/star_graph/full_path_accuracy \\
        --final last/test/star_graph/full_path_accuracy --rule val/star_graph/first_step_accuracy=0.10
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from mtp_bench import stats

CUMULATIVE = {"tokens": "train/tokens_processed", "flops": "train/flops", "seconds": "train/seconds"}
DEFAULT_STORE = "sqlite:///results/mlflow.db"


@dataclass
class TrialCurve:
    label: str
    method: str
    cell: str
    seed: int | None
    run_id: str
    metrics: dict[str, float]
    curve: dict[int, float]  # eval step -> periodic metric
    cumulative: dict[str, dict[int, float]] = field(default_factory=dict)  # tokens/flops/seconds at logged steps

    @property
    def last_step(self) -> int | None:
        return max(self.curve) if self.curve else None

    def first_reaching(self, threshold: float) -> int | None:
        return next((s for s in sorted(self.curve) if self.curve[s] >= threshold), None)

    def at(self, kind: str, step: int) -> float | None:
        """Cumulative tokens/FLOPs/seconds at ``step``: linear between logged steps (and from 0 at step 0); None
        without a history or past its last step (a counter is not extrapolated)."""
        history = dict(self.cumulative.get(kind) or {})
        if not history or step > max(history):
            return None
        history.setdefault(0, 0.0)
        steps = sorted(history)
        return float(np.interp(step, steps, [history[s] for s in steps]))


# ------------------------------------------------------------------------------------------------ reading ----
def read_trials(suite_path: str, overrides: list[str], store_uri: str | None, metric: str | None,
                extra_histories: list[str]) -> tuple[Any, list[TrialCurve], list[tuple[str, str, str]], str]:
    from mtp_bench.compare import _absolute_store
    from mtp_bench.comparison import Store, select_runs
    from mtp_bench.suite import expand_grid, load_suite

    suite = load_suite(suite_path, overrides)
    expected = {t.trial_id: t.label for t in expand_grid(suite)}
    store = Store(_absolute_store(store_uri or suite.tracking.uri or DEFAULT_STORE),
                  suite.tracking.experiment or suite.name)
    runs, excluded = select_runs(store.trial_runs(suite.name), expected)
    if metric is None:
        named = Counter(f"{r.tags.get('mtp_bench.periodic_split', 'val')}/{r.tags['mtp_bench.select_metric']}"
                        for r in runs if r.tags.get("mtp_bench.select_metric"))
        if not named:
            raise SystemExit("no finished trial names its selection metric: pass --metric val/...")
        metric = named.most_common(1)[0][0]
    trials = [TrialCurve(run.label, run.method, run.cell, run.seed, run.run_id, run.metrics,
                         store.history(run.run_id, metric),
                         {key: store.history(run.run_id, CUMULATIVE.get(key, key))
                          for key in [*CUMULATIVE, *extra_histories]}) for run in runs]
    order = {m.display_name: i for i, m in enumerate(suite.methods)}
    trials.sort(key=lambda t: (t.cell, order.get(t.method, len(order)), t.seed if t.seed is not None else -1))
    return suite, trials, excluded, metric


def groups_of(trials: list[TrialCurve]) -> dict[tuple[str, str], list[TrialCurve]]:
    out: dict[tuple[str, str], list[TrialCurve]] = {}
    for trial in trials:
        out.setdefault((trial.cell, trial.method), []).append(trial)
    return out


def baseline_of(groups: dict[tuple[str, str], list[TrialCurve]], cell: str,
                baseline: str) -> list[TrialCurve] | None:
    from mtp_bench.comparison import shared_cell

    return groups.get((shared_cell(cell), baseline))


# ---------------------------------------------------------------------------------------------- formatting ----
def fmt(value: float | None, kind: str = "steps") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if kind in ("steps", "seconds"):
        return f"{value:.0f}"
    return f"{value:.3g}"


def interval_text(values: list[float], kind: str, censored: int) -> str:
    interval = stats.mean_ci(values)
    if censored:
        return f"≥ {fmt(interval.mean, kind)} ({censored} not reached)"
    if interval.n < 2:
        return f"{fmt(interval.mean, kind)} (n={interval.n}, no CI)"
    return f"{fmt(interval.mean, kind)} [{fmt(interval.low, kind)}, {fmt(interval.high, kind)}]"


def crossing(trial: TrialCurve, threshold: float, kind: str) -> tuple[float | None, bool]:
    """(value, censored) in ``kind`` units at the first evaluation reaching ``threshold``; for a trial that never
    reached it, the value at its last evaluation with censored True (the true value lies beyond: a lower bound).
    The value is None when unknown (no curve, or no counter history covering the step)."""
    step = trial.first_reaching(threshold)
    censored = step is None
    step = trial.last_step if censored else step
    if step is None:
        return None, True
    return (float(step) if kind == "steps" else trial.at(kind, step)), censored


def who_first(mine: tuple[float | None, bool], theirs: tuple[float | None, bool]) -> int | None:
    """-1 when ``mine`` reached the threshold first, +1 later, 0 a tie; None when neither reached it or the order is
    unknown (a censored side is beaten only by a value at or below its bound)."""
    (a, a_censored), (b, b_censored) = mine, theirs
    if a is None or b is None or (a_censored and b_censored):
        return None
    if a_censored:
        return 1 if b <= a else None
    if b_censored:
        return -1 if a <= b else None
    return (a > b) - (a < b)


def signed(value: float, kind: str) -> str:
    return f"{value:+.0f}" if kind in ("steps", "seconds") else f"{value:+.3g}"


def sign_test(earlier: int, later: int) -> float | None:
    """Exact two-sided sign test of ``earlier`` against ``later`` (ties left out); None without a decided pair."""
    return float(sps.binomtest(earlier, earlier + later, 0.5).pvalue) if earlier + later else None


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(esc(c) for c in row) + " |" for row in rows]


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
        d = stats.mean_ci(diffs)
        versus = (f"{sign(d.mean)} [{sign(d.low)}, {sign(d.high)}] ({len(diffs)} pairs)" if d.has_ci
                  else f"{sign(d.mean)} ({len(diffs)} pair{'s' if len(diffs) > 1 else ''}, no CI)")
    orders = [who_first(mine[s], theirs[s]) for s in seeds]
    earlier, later = orders.count(-1), orders.count(1)
    p = sign_test(earlier, later)
    p_text = (f"{earlier} earlier / {later} later / {len(seeds) - earlier - later} tie, neither or undecided"
              + (f"; sign p={p:.3g}" if p is not None else ""))
    return [per_seed, summary, versus, p_text]


def steps_section(trials: list[TrialCurve], metric: str, threshold: float, baseline: str,
                  kinds: list[str]) -> list[str]:
    groups = groups_of(trials)
    lines = [f"### First evaluation at which `{metric}` ≥ {threshold:g}", ""]
    for kind in kinds:
        rows = [[cell_title(cell) if cell else "", method, str(len(members)),
                 *steps_row(members, baseline_of(groups, cell, baseline), threshold, kind)]
                for (cell, method), members in groups.items()]
        header = ["cell", "method", "n", "per seed (seed:value; >bound: not reached)", "mean [95% CI]",
                  f"Δ vs {baseline} (paired, both reached; < 0: earlier)", "seeds earlier/later than baseline"]
        if not any(t.cell for t in trials):  # one cell: no cell column
            header, rows = header[1:], [row[1:] for row in rows]
        lines += [f"**In {UNITS[kind]}.**", ""] + md_table(header, rows) + [""]
    return lines


def curve_section(trials: list[TrialCurve], metric: str, every: int | None) -> list[str]:
    groups = groups_of(trials)
    steps = sorted({s for t in trials for s in t.curve})
    if every and steps:
        steps = [s for s in steps if s % every == 0 or s == steps[-1]]
    header = ["step"] + [f"{m}" + (f" [{c}]" if c else "") for c, m in groups]
    rows = []
    for step in steps:
        row = [str(step)]
        for members in groups.values():
            values = [t.curve[step] for t in members if step in t.curve]
            i = stats.mean_ci(values)
            row.append("—" if i.n == 0 else f"{i.mean:.3f}" + (f" ± {(i.high - i.low) / 2:.3f}" if i.has_ci else ""))
        rows.append(row)
    return [f"### `{metric}` over training (mean ± 95% t half-width over seeds)", ""] + md_table(header, rows) + [""]


def seed_paired_section(trials: list[TrialCurve], metric: str, baseline: str) -> list[str]:
    """A final metric with the seed as the unit: per-seed values, mean with a t-interval, and the paired difference
    against the baseline over seeds (t-interval, paired t-test, wins/losses with an exact sign test). Unlike the
    per-question McNemar test of ``mtp-bench compare`` (which holds the trained seeds fixed), this interval includes
    the seed-to-seed variation of training (initialisation and data order)."""
    groups = groups_of(trials)
    rows = []
    for (cell, method), members in groups.items():
        values = {t.seed: t.metrics[metric] for t in members if metric in t.metrics}
        interval = stats.mean_ci(list(values.values()))
        mean = (f"{interval.mean:.3f} [{interval.low:.3f}, {interval.high:.3f}]" if interval.has_ci
                else f"{interval.mean:.3f} (n=1)" if interval.n else "—")
        versus = p_text = ""
        base = baseline_of(groups, cell, baseline)
        if base is not None and members is not base:
            theirs = {t.seed: t.metrics[metric] for t in base if metric in t.metrics}
            seeds = [seed for seed in values if seed in theirs]
            diffs = [values[seed] - theirs[seed] for seed in seeds]
            if len(diffs) >= 2:
                d = stats.mean_ci(diffs)
                versus = (f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]" if d.has_ci else f"{d.mean:+.3f}")
                test = sps.ttest_rel([values[s] for s in seeds], [theirs[s] for s in seeds])
                wins, losses = sum(x > 0 for x in diffs), sum(x < 0 for x in diffs)
                sign_p = sign_test(wins, losses)
                p_value = float(test.pvalue) if test.pvalue == test.pvalue else math.nan
                p_text = (f"paired t p={p_value:.3g}; {wins} higher / {losses} lower"
                          + (f", sign p={sign_p:.3g}" if sign_p is not None else ""))
        per_seed = " ".join(f"{seed}:{value:.3f}" for seed, value in values.items())
        rows.append([cell_title(cell), method, str(interval.n), per_seed, mean, versus, p_text])
    header = ["cell", "method", "n", "per seed", "mean [95% CI]", f"Δ vs {baseline} over seeds [95% CI]", "tests"]
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


# --------------------------------------------------------------------------------------------------- CLI ----
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mtp_bench.bench.steps_to_accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", help="suite YAML (its store, experiment, baseline and grid are used)")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="dotted overrides of the suite")
    parser.add_argument("--store", help="MLflow tracking URI (default: the suite's)")
    parser.add_argument("--metric", help="periodic metric (default: <split>/<the trials' selection metric>)")
    parser.add_argument("--baseline", help="method label to pair against (default: the suite's)")
    parser.add_argument("--threshold", type=float, action="append", help="accuracy threshold (repeatable; 0.9)")
    parser.add_argument("--kinds", default="steps,tokens,flops,seconds",
                        help="units of the to-accuracy tables (comma list of steps,tokens,flops,seconds)")
    parser.add_argument("--no-steps", action="store_true", help="skip the to-accuracy tables")
    parser.add_argument("--curve-every", type=int, default=None,
                        help="curve table: only steps that are multiples of this (and the last); 0 = no table")
    parser.add_argument("--last", action="append", default=[], metavar="METRIC",
                        help="per-trial table: a periodic metric's value at the last evaluation (repeatable)")
    parser.add_argument("--final", action="append", default=[], metavar="METRIC",
                        help="per-trial table: a final metric, e.g. best/test/star_graph/full_path_accuracy")
    parser.add_argument("--seed-paired", action="append", default=[], metavar="METRIC",
                        help="a final metric (e.g. best/test/exact_match/exact_match) with the seed as the unit")
    parser.add_argument("--rule", metavar="METRIC=DELTA",
                        help="decision rule per cell on a periodic metric's last-evaluation value")
    parser.add_argument("--output", help="also write the markdown here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not set(kinds) <= set(UNITS):
        raise SystemExit(f"--kinds: unknown {', '.join(sorted(set(kinds) - set(UNITS)))}; known: {', '.join(UNITS)}")
    rule_metric, _, delta_text = (args.rule or "").partition("=")
    rule_delta = float(delta_text) if rule_metric else 0.0
    extra = list(dict.fromkeys([*args.last, *([rule_metric] if rule_metric else [])]))
    from mtp_bench.comparison import CompareError
    from mtp_bench.suite.load import SuiteError

    try:
        suite, trials, excluded, metric = read_trials(args.suite, args.overrides, args.store, args.metric, extra)
    except (CompareError, SuiteError) as exc:
        raise SystemExit(f"steps_to_accuracy: error: {exc}") from None
    baseline = args.baseline or suite.baseline or "ntp"
    command = shlex.join(["python", "-m", "mtp_bench.bench.steps_to_accuracy",
                          *(argv if argv is not None else sys.argv[1:])])
    lines = [f"## {suite.name}: learning curves from the MLflow store", "", f"`{command}`", "",
             f"{len(trials)} finished trials; periodic metric `{metric}`; baseline `{baseline}`.", ""]
    if not args.no_steps:
        for threshold in args.threshold or [0.9]:
            lines += steps_section(trials, metric, threshold, baseline, kinds)
    if args.curve_every != 0 and not args.no_steps:
        lines += curve_section(trials, metric, args.curve_every)
    for name in args.seed_paired:
        lines += seed_paired_section(trials, name, baseline)
    if args.last or args.final:
        lines += per_trial_section(trials, args.last, args.final)
    if rule_metric:
        lines += rule_section(trials, rule_metric, rule_delta, baseline)
    if excluded:
        lines += ["### Trials not included", ""] + md_table(["trial", "status", "reason"],
                                                            [list(e) for e in excluded]) + [""]
    text = "\n".join(lines)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
