"""The verdict line a person reads first, the power notes in the metric's own range, and the warning when compared
runs come from more than one commit. Comparisons are built from an in-memory store (no MLflow: the same
``build_comparison`` reads it through the store's interface), with p-values and intervals worked out independently
(exact counts of sign patterns, scipy's t quantiles)."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
from rich.console import Console
from scipy import stats as scipy_stats

from mtp_bench.analysis import stats
from mtp_bench.analysis.comparison import build_comparison
from mtp_bench.analysis.notes import power_lines, verdict_line
from mtp_bench.analysis.render import markdown, print_comparison
from mtp_bench.analysis.runs import UNKNOWN_COMMIT, runs_by_commit
from mtp_bench.analysis.verdict import decide
from mtp_bench.tracking import TAG_GIT, TAG_SELECT_METRIC
from mtp_bench.tracking.store import TrialRun

METRIC = "test/exact_match/exact_match"
UNIT = (0.0, 1.0)
OLD, NEW = "a" * 40, "b" * 40


class MemoryStore:
    """The part of :class:`mtp_bench.tracking.store.Store` that ``build_comparison`` reads."""

    def __init__(self, runs: list[TrialRun]):
        self.runs, self.uri = runs, "memory"

    def trial_runs(self, suite: str | None = None) -> list[TrialRun]:
        return list(self.runs)

    def scores(self, run_id: str, artifact: str, key: str) -> None:
        return None

    def history(self, run_id: str, name: str) -> dict[int, float]:
        return {}


def run(method: str, seed: int, values: dict[str, float], commit: str | None = NEW, cell: str = "") -> TrialRun:
    tags = {TAG_SELECT_METRIC: "exact_match/exact_match", **({TAG_GIT: commit} if commit else {})}
    return TrialRun(f"{method}-{cell}-{seed}", f"{method}-{cell}-{seed}", method, seed, cell, "FINISHED", values,
                    tags, {"evaluation.scorers.0.name": "exact_match"})


def comparison_of(per_method: dict[str, list[float]], checkpoints: tuple[str, ...] = ("last",),
                  commits: dict[tuple[str, int], str | None] | None = None, cell: str = ""):
    runs = [run(method, seed, {f"{c}/{METRIC}": v for c in checkpoints}, (commits or {}).get((method, seed), NEW),
                cell)
            for method, values in per_method.items() for seed, v in enumerate(values)]
    return build_comparison(MemoryStore(runs), title="t", baseline="ntp")


def t_bounds(d: np.ndarray) -> tuple[float, float]:
    half = scipy_stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return max(d.mean() - half, -1.0), min(d.mean() + half, 1.0)


def compared(method: list[float], baseline: list[float]) -> stats.SeedComparison:
    return stats.compare_seeds(list(range(len(method))), method, baseline, UNIT)


# ------------------------------------------------------------------------------------------------ verdict ----
def test_six_seeds_all_higher_is_shown_with_its_interval_and_exact_p() -> None:
    method, baseline = [0.60, 0.62, 0.65, 0.58, 0.70, 0.66], [0.50, 0.52, 0.51, 0.49, 0.55, 0.50]
    paired = compared(method, baseline)
    d = np.array(method) - np.array(baseline)
    low, high = t_bounds(d)
    # Every seed higher: of the 64 sign patterns only all-plus and all-minus are as extreme: p = 2/64.
    assert paired.p_permutation == pytest.approx(2 / 64)
    assert decide(paired).shown
    assert verdict_line("mutor", "ntp", paired) == (f"mutor vs ntp: {d.mean():+.3g} [{low:+.3g}, {high:+.3g}] over "
                                                    "6 seeds, 6/6 higher, p = 0.031 → shown")


def test_a_small_mixed_difference_is_not_shown_and_says_how_many_seeds_it_needs() -> None:
    paired = compared([0.50, 0.55, 0.48, 0.60, 0.47, 0.52], [0.52, 0.50, 0.50, 0.55, 0.49, 0.50])
    decision = decide(paired)
    needed = paired.power.seeds_needed
    assert not decision.shown and needed > 6
    # The power note's seeds, checked against the noncentral t: enough seeds reach power 0.8, one fewer does not.
    d, sd = paired.delta, paired.power.sd
    assert stats.paired_t_power(d, sd, needed) >= 0.8 > stats.paired_t_power(d, sd, needed - 1)
    assert decision.reason == f"exact p ≥ 0.05; the interval includes 0; a difference this size needs ~{needed} seeds"
    line = verdict_line("mtp_heads", "ntp", paired)
    assert re.fullmatch(r"mtp_heads vs ntp: \+0\.0\d+ \[-0\.0\d+, \+0\.0\d+\] over 6 seeds, 3/6 higher, "
                        r"p = 0\.\d+ → not shown \(.*\)", line), line


def test_below_six_seeds_nothing_is_shown_even_when_every_seed_is_higher() -> None:
    five = compared([0.9, 0.8, 0.85, 0.95, 0.7], [0.1, 0.2, 0.15, 0.05, 0.3])
    assert five.has_ci and five.low > 0 and five.p_t < 0.01  # the t-test alone would call it
    assert five.p_permutation == pytest.approx(2 / 32)  # the exact test's floor at 5 seeds
    assert decide(five).reason.startswith("with 5 seeds the exact test cannot reach p < 0.05 (smallest possible p "
                                          "0.0625); run ≥ 6")
    two = compared([0.667, 0.0], [0.0, 0.927])  # the quickstart's reversed-looking case, read as values
    line = verdict_line("mtp_heads", "ntp", two)
    assert line.startswith("mtp_heads vs ntp: -0.13 (per-seed Δ +0.667, -0.927; no interval) over 2 seeds, "
                           "1/2 higher, p = 1 → not shown (2 seeds cannot show a difference; run ≥ 6")
    one = compared([0.5], [0.4])
    assert verdict_line("mutor", "ntp", one) == ("mutor vs ntp: +0.1 over 1 seed → not shown (1 seed cannot show a "
                                                 "difference; run ≥ 6)")


def test_ties_and_no_spread() -> None:
    same = compared([0.6] * 6, [0.5] * 6)  # every seed +0.1: no spread, no interval; the exact test decides
    assert not same.has_ci and same.note == stats.SAME_DIFFERENCE and decide(same).shown
    assert verdict_line("m", "ntp", same) == "m vs ntp: +0.1 (the same every seed) over 6 seeds, 6/6 higher, " \
                                             "p = 0.031 → shown"
    tied = compared([0.5] * 6, [0.5] * 6)
    assert decide(tied).text == "not shown (every seed tied)"
    some = compared([0.5, 0.6, 0.7, 0.8, 0.5, 0.9], [0.5, 0.4, 0.5, 0.6, 0.6, 0.5])
    assert ", 4/6 higher, 1 tied, p = " in verdict_line("m", "ntp", some)


# -------------------------------------------------------------------------------------------------- power ----
def test_power_note_says_in_words_when_no_difference_in_range_is_detectable() -> None:
    comparison = comparison_of({"ntp": [0.0, 0.933], "mutor": [0.667, 0.0]})
    paired = comparison.rows[-1].paired
    assert paired.power.detectable > 1  # a t-test at 2 seeds and this spread needs |Δ| beyond an accuracy's range
    lines = power_lines(comparison)
    assert "no difference this metric can have (|Δ| ≤ 1) is detectable by a paired t-test" in lines[0]
    assert "detects |Δ| ≥" not in " ".join(lines)
    assert lines[-1].startswith("- These figures are for the paired t-test only. The exact tests (permutation, "
                                "sign) cannot reach p < 0.05 below 6 seeds")
    assert "0.5 at 2, 0.25 at 3, 0.125 at 4, 0.0625 at 5 seeds" in lines[-1] and lines[-1].endswith("here: 2.")
    six = comparison_of({"ntp": [0.5, 0.52, 0.51, 0.49, 0.55, 0.50], "mutor": [0.6, 0.62, 0.65, 0.58, 0.70, 0.66]})
    six_lines = power_lines(six)
    assert len(six_lines) == 1 and "a paired t-test detects |Δ| ≥ 0.0" in six_lines[0]  # in range: the number


# ------------------------------------------------------------------------------------------------ commits ----
def test_runs_from_two_commits_are_named_on_screen_and_in_the_report() -> None:
    commits = {("mutor", 4): OLD, ("mutor", 5): OLD, ("ntp", 0): None}
    comparison = comparison_of({"ntp": [0.5, 0.52, 0.51, 0.49, 0.55, 0.50],
                                "mutor": [0.6, 0.62, 0.65, 0.58, 0.70, 0.66]}, commits=commits)
    assert list(comparison.by_commit) == [NEW, OLD, UNKNOWN_COMMIT]  # most runs first, untagged last
    assert comparison.by_commit == {
        NEW: [("mutor", 0), ("mutor", 1), ("mutor", 2), ("mutor", 3), ("ntp", 1), ("ntp", 2), ("ntp", 3),
              ("ntp", 4), ("ntp", 5)],
        OLD: [("mutor", 4), ("mutor", 5)], UNKNOWN_COMMIT: [("ntp", 0)]}
    text = markdown(comparison)
    assert "> **Mixed code versions.** These runs come from 3 code versions" in text
    assert "> - bbbbbbbb: mutor seeds 0-3; ntp seeds 1-5" in text and "> - aaaaaaaa: mutor seeds 4-5" in text
    assert "> - unknown: ntp seed 0" in text
    assert text.index("Mixed code versions") < text.index("## Verdict")
    screen = io.StringIO()
    print_comparison(Console(file=screen, width=200, highlight=False), comparison, [])
    shown = screen.getvalue().splitlines()
    assert shown[0].startswith("These runs come from 3 code versions")  # before the tables
    assert "Mixed code versions: bbbbbbbb, aaaaaaaa, unknown (listed above)." in shown  # and again by the verdict
    assert max(len(line) for line in shown) <= 120
    single = comparison_of({"ntp": [0.5, 0.6, 0.7], "mutor": [0.5, 0.6, 0.8]})
    assert list(single.by_commit) == [NEW] and "Mixed code versions" not in markdown(single)


def test_runs_by_commit_keeps_cells_and_seed_order() -> None:
    runs = [run("mutor", 2, {}, OLD, cell="a=1"), run("mutor", 0, {}, OLD, cell="a=1"), run("ntp", 1, {}, NEW)]
    assert runs_by_commit(runs) == {OLD: [("mutor [a=1]", 0), ("mutor [a=1]", 2)], NEW: [("ntp", 1)]}


# ------------------------------------------------------------------------------------------------- screen ----
def test_verdict_uses_the_validation_checkpoint_and_fits_the_screen() -> None:
    cell = "data.params.digits=4 train.max_steps=1000 evaluation.every_steps=100"
    comparison = comparison_of({"ntp": [0.0, 0.933], "a_method_with_a_long_label": [0.667, 0.0]},
                               checkpoints=("last", "best", "best_on_test"), cell=cell)
    assert comparison.headline_checkpoint == "best"
    assert [row.checkpoint for row in comparison.verdict_rows()] == ["best"]
    screen = io.StringIO()
    print_comparison(Console(file=screen, width=250, highlight=False, soft_wrap=True), comparison, [])
    lines = screen.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 120
    start = next(i for i, line in enumerate(lines) if line.startswith("Verdict on test/exact_match/exact_match "
                                                                       "(best on validation) against ntp"))
    verdict = " ".join(line.strip() for line in lines[start:])
    assert (f"a_method_with_a_long_label [{cell}] vs ntp: -0.133 (per-seed Δ +0.667, -0.933; no interval) over 2 "
            "seeds, 1/2 higher, p = 1 → not shown (2 seeds cannot show a difference; run ≥ 6") in verdict
    assert "±" not in screen.getvalue() and "±" not in markdown(comparison)
    assert "| 0.3335 (seeds 0.667, 0; two seeds: no interval) | -0.133 (per-seed Δ +0.667, -0.933; two seeds: no " \
           "interval) |" in markdown(comparison)  # two seeds: values, labelled as values


def test_the_tables_on_screen_show_each_grid_cell_in_the_method_column() -> None:
    """A label's cell is in brackets, which rich would read as markup and drop: every row would read just "ntp"."""
    comparison = comparison_of({"ntp": [0.2, 0.4, 0.3], "mutor": [0.5, 0.6, 0.4]}, cell="train.max_steps=400")
    screen = io.StringIO()
    print_comparison(Console(file=screen, width=120, highlight=False), comparison, [])
    table = screen.getvalue().split("└")[0]  # the scores table (a long label wraps onto a second line)
    assert table.count("[train.max_steps=400]") == 2


def test_interval_column_says_when_the_interval_was_clipped() -> None:
    comparison = comparison_of({"ntp": [0.0, 1.0, 0.0], "mutor": [1.0, 0.0, 1.0]})  # Δ +1, -1, +1
    row = next(line for line in markdown(comparison).splitlines() if line.startswith(f"| {METRIC} | last checkpoint | "
                                                                                    "mutor |"))
    assert "| +0.3333 [-1, +1] | t over seeds, clipped to [-1, 1] |" in row
    unclipped = comparison_of({"ntp": [0.5, 0.52, 0.51], "mutor": [0.6, 0.62, 0.65]})
    row = next(line for line in markdown(unclipped).splitlines() if "| mutor |" in line)
    assert "| t over seeds |" in row
