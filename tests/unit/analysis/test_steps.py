"""``mtp-bench steps`` on a store built by hand: 2 methods x 3 seeds with known first
crossings of the threshold, one seed that never reaches it (a lower bound), cumulative counters logged between
evaluation steps (interpolated), and golden numbers worked out by hand (t quantiles from a table, binomial sums)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from scipy import stats as scipy_stats

from helpers import make_suite, write_suite
from mtp_bench import cli
from mtp_bench.analysis import stats
from mtp_bench.analysis import steps as sta

T_975 = {1: 12.706204736174707, 2: 4.302652729911275}  # two-sided 95% Student-t quantiles by degrees of freedom
SUITE = "sta"
THRESHOLD = 0.5
# Validation exact match at evaluation steps 100/200/300. First step >= 0.5: ntp 200, 300, never (> 300);
# mutor 100, 100 (exactly 0.5: reached), 300.
CURVES = {
    ("ntp", 0): {100: 0.2, 200: 0.6, 300: 0.8}, ("ntp", 1): {100: 0.1, 200: 0.4, 300: 0.7},
    ("ntp", 2): {100: 0.1, 200: 0.3, 300: 0.4},
    ("mutor", 0): {100: 0.6, 200: 0.9, 300: 0.9}, ("mutor", 1): {100: 0.5, 200: 0.7, 300: 0.8},
    ("mutor", 2): {100: 0.2, 200: 0.4, 300: 0.6},
}
# Cumulative counters, logged every 80 steps and at the last (300), so evaluation steps fall between logged steps.
TOKENS = {"ntp": {80: 8000.0, 160: 20000.0, 240: 30000.0, 300: 36000.0},
          "mutor": {80: 12000.0, 160: 36000.0, 240: 48000.0, 300: 60000.0}}
SECONDS = {"ntp": {80: 8.0, 160: 16.0, 240: 24.0, 300: 30.0}, "mutor": {80: 12.0, 160: 24.0, 240: 36.0, 300: 45.0}}
FINAL = {("ntp", 0): 0.80, ("ntp", 1): 0.70, ("ntp", 2): 0.40, ("mutor", 0): 0.90, ("mutor", 1): 0.85,
         ("mutor", 2): 0.60}
FINAL_METRIC = "last/test/exact_match/exact_match"


def suite_document(tmp_path: Path) -> dict:
    """The grid the tool expands (trial ids): NTP and MuToR on synthetic addition, 3 seeds; nothing is trained."""
    return make_suite(tmp_path, base="addition", name=SUITE,
                      data={"task": "addition", "params": {"digits": 2, "train_size": 100, "test_size": 20}},
                      methods=[{"name": "ntp"}, {"name": "mutor"}], baseline="ntp",
                      train={"max_steps": 300, "batch_size": 4, "max_length": 32, "log_every": 80, "progress": False},
                      evaluation={"scorers": [{"name": "exact_match"}], "every_steps": 100}, grid={"seeds": [0, 1, 2]},
                      tracking={"workdir": str(tmp_path / "trials")})


def add_run(client: MlflowClient, experiment: str, trial_id: str, method: str, seed: int, curve: dict[int, float],
            start: int) -> None:
    tags = {"mtp_bench.kind": "trial", "mtp_bench.method": method, "mtp_bench.seed": str(seed),
            "mtp_bench.trial_id": trial_id, "mtp_bench.cell": "", "mtp_bench.suite": SUITE,
            "mtp_bench.select_metric": "exact_match/exact_match", "mtp_bench.periodic_split": "val"}
    run_id = client.create_run(experiment, start_time=1_000_000 + start, tags=tags).info.run_id
    values = [Metric("val/exact_match/exact_match", value, 0, step) for step, value in curve.items()]
    for step, tokens in TOKENS[method].items():
        values += [Metric("train/tokens_processed", tokens, 0, step), Metric("train/flops", 6e6 * tokens, 0, step),
                   Metric("train/seconds", SECONDS[method][step], 0, step)]
    values.append(Metric(FINAL_METRIC, FINAL[(method, seed)], 0, 300))
    client.log_batch(run_id, metrics=values)
    client.set_terminated(run_id, "FINISHED")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The store and the tool's output are built once per module (an MLflow store takes seconds to create)."""
    from mtp_bench.suite import expand_grid, load_suite

    tmp_path = tmp_path_factory.mktemp("steps_to_accuracy")
    path = write_suite(tmp_path, suite_document(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment(SUITE, artifact_location=(tmp_path / "artifacts").as_uri())
    ids = {(t.method.display_name, t.seed): t.trial_id for t in expand_grid(load_suite(str(path)))}
    assert set(ids) == set(CURVES)
    # An older finished repeat of ntp seed 0 that reached the threshold at step 100: only the newest run counts.
    add_run(client, experiment, ids[("ntp", 0)], "ntp", 0, {100: 0.9, 200: 0.9, 300: 0.9}, start=-500)
    for (method, seed), curve in CURVES.items():
        add_run(client, experiment, ids[(method, seed)], method, seed, curve, start=seed)
    out = tmp_path / "out" / "steps.md"
    code = cli.main(["steps", str(path), "--store", uri, "--threshold", str(THRESHOLD), "--seed-paired", FINAL_METRIC,
                     "--output", str(out)])
    assert code == 0
    return out.read_text()


def rows(text: str, unit: str) -> dict[str, list[str]]:
    """The to-accuracy table in ``unit`` (e.g. "optimiser steps"), by method: per seed, mean, Δ, sign test."""
    block = text.split(f"**In {unit}.**", 1)[1].split("\n\n", 2)[1]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines()[2:]]
    return {row[0]: row[2:] for row in cells}


def test_steps_to_threshold_means_paired_difference_and_sign_test(report: str) -> None:
    assert "periodic metric `val/exact_match/exact_match`" in report  # from the trials' tags
    assert "5 finished trials" not in report and "6 finished trials" in report  # the older repeat is left out
    steps = rows(report, "optimiser steps")
    per_seed, mean, delta, sign = steps["mutor"]
    assert per_seed == "0:100 1:100 2:300"  # 0.5 at step 100 counts as reached (>=)
    # Steps are a count: the t-interval over the seeds 100, 100, 300 is [-120, 454], clipped at 0.
    half = T_975[2] * math.sqrt(((100 - 500 / 3) ** 2 * 2 + (300 - 500 / 3) ** 2) / 2) / math.sqrt(3)
    assert round(500 / 3 - half) == -120 and round(500 / 3 + half) == 454
    assert mean == "167 [0, 454]"
    # The seed that never reached 0.5 is a lower bound, and so is the mean that counts it at its last evaluation.
    ntp_seeds, ntp_mean, ntp_delta, ntp_sign = steps["ntp"]
    assert ntp_seeds == "0:200 1:300 2:>300"
    assert ntp_mean == "≥ 267 (1 not reached)"  # (200 + 300 + 300) / 3
    assert ntp_delta == ntp_sign == ""  # the baseline is not tested against itself
    # Paired over the seeds where both reached it: 100 - 200 and 100 - 300; two pairs give no interval (a
    # t-interval would be -150 [-785, +485]): both differences, labelled as such.
    assert delta == "-150 (2 pairs: -100, -200; no interval)"
    # Seed 2: mutor at 300, ntp beyond 300: earlier. 3 of 3 earlier: p = 2 * (1/2)^3 = 0.25.
    assert sign == "3 earlier / 0 later / 0 tie, neither or undecided; sign p=0.25"


def test_curve_table_has_clipped_t_intervals_and_no_plus_minus(report: str) -> None:
    section = report.split("over training", 1)[1].split("\n\n", 2)[1]
    assert "±" not in report
    step_300 = next(line for line in section.splitlines() if line.startswith("| 300 |"))
    # ntp at step 300: 0.8, 0.7, 0.4 -> mean 0.633, t-interval 0.633 -+ 4.303 x 0.208 / sqrt(3), clipped at 0.
    values = [0.8, 0.7, 0.4]
    mean, sd = sum(values) / 3, scipy_stats.tstd(values)
    low, high = max(mean - T_975[2] * sd / math.sqrt(3), 0.0), min(mean + T_975[2] * sd / math.sqrt(3), 1.0)
    assert step_300.split("|")[2].strip() == f"{mean:.3f} [{low:.3f}, {high:.3f}]"
    assert "The exact sign test cannot reach p < 0.05 below 6 seeds (smallest p with 3: 0.25)." in report


def test_two_seeds_get_no_interval_in_the_curve_table() -> None:
    from mtp_bench.analysis.steps_report import curve_section

    trials = [sta.TrialCurve("t", "ntp", "", seed, "r", {}, {100: value}) for seed, value in ((0, 0.0), (1, 0.946))]
    table = curve_section(trials, "val/exact_match/exact_match", None)
    assert "| 100 | 0.473 |" in table and "±" not in "\n".join(table)  # the mean alone: no ± 6.014


def test_tokens_are_interpolated_and_a_censored_seed_can_stay_undecided(report: str) -> None:
    tokens = rows(report, "positions processed (registers included)")
    # mutor at step 100: 12,000 at step 80 + 20/80 of the 24,000 to step 160 = 18,000; at 300: logged 60,000.
    # ntp at step 200: 20,000 + 40/80 x 10,000 = 25,000; at 300 (seed 1 and seed 2's bound): 36,000.
    per_seed, mean, delta, sign = tokens["mutor"]
    assert per_seed == "0:1.8e+04 1:1.8e+04 2:6e+04"
    assert mean.startswith("3.2e+04 [")  # (18,000 + 18,000 + 60,000) / 3
    assert tokens["ntp"][:2] == ["0:2.5e+04 1:3.6e+04 2:>3.6e+04", "≥ 3.23e+04 (1 not reached)"]
    assert delta == "-1.25e+04 (2 pairs: -7e+03, -1.8e+04; no interval)"  # (-7,000 - 18,000) / 2
    # Seed 2: mutor reached at 60,000 positions, ntp had processed only 36,000 by its last evaluation and was still
    # below 0.5: which side got there on fewer positions is unknown, so the seed is left out: 2 of 2, p = 0.5.
    assert sign == "2 earlier / 0 later / 1 tie, neither or undecided; sign p=0.5"
    flops = rows(report, "training FLOPs (6·params·positions)")
    assert flops["mutor"][0] == "0:1.08e+11 1:1.08e+11 2:3.6e+11"  # 6e6 x tokens
    seconds = rows(report, "training seconds (shared machine)")
    assert seconds["mutor"][0] == "0:15 1:15 2:45"  # 12 + 20/80 x 12 at step 100


def test_seed_paired_final_metric(report: str) -> None:
    section = report.split("with the seed as the unit", 1)[1]
    mutor = next(line for line in section.splitlines() if line.startswith("| mutor"))
    differences = [0.10, 0.15, 0.20]
    p = scipy_stats.ttest_rel([0.90, 0.85, 0.60], [0.80, 0.70, 0.40]).pvalue
    # A t-interval over the three per-seed differences (SD 0.05), inside [-1, 1] so not clipped.
    half = T_975[2] * 0.05 / math.sqrt(3)
    assert f"+0.15 [{0.15 - half:+.3g}, {0.15 + half:+.3g}] (t over seeds)" in mutor
    assert sum(differences) / 3 == pytest.approx(0.15)
    # The verdict: 3 seeds cannot reach p < 0.05 with the exact test, however consistent.
    assert "→ not shown (with 3 seeds the exact test cannot reach p < 0.05 (smallest possible p 0.25); run ≥ 6" \
        in mutor
    # Exact permutation: all three differences positive, so 2 of the 8 sign patterns are as extreme.
    assert f"paired t p={p:.2g}, exact permutation p=0.25; 3 higher / 0 lower, sign p=0.25" in mutor


def test_counters_interpolate_from_zero_and_never_extrapolate() -> None:
    trial = sta.TrialCurve("t", "ntp", "", 0, "r", {}, dict(CURVES[("ntp", 2)]),
                           {"tokens": dict(TOKENS["ntp"]), "seconds": {}})
    assert trial.at("tokens", 40) == pytest.approx(4000.0)  # from 0 at step 0 to 8,000 at step 80
    assert trial.at("tokens", 80) == pytest.approx(8000.0)
    assert trial.at("tokens", 270) == pytest.approx(33000.0)
    assert trial.at("tokens", 301) is None and trial.at("seconds", 100) is None
    assert sta.crossing(trial, THRESHOLD, "steps") == (300.0, True)  # never reached: bound at the last evaluation
    assert sta.crossing(trial, 0.4, "tokens") == (36000.0, False)
    assert sta.who_first((100.0, False), (300.0, True)) == -1  # reached before the other's bound
    assert sta.who_first((400.0, False), (300.0, True)) is None  # past the other's bound: order unknown
    assert sta.who_first((300.0, True), (300.0, True)) is None
    assert sta.who_first((200.0, False), (200.0, False)) == 0
    assert stats.sign_test(3, 0) == pytest.approx(0.25) and stats.sign_test(4, 1) == pytest.approx(6 / 16)
    assert math.isnan(stats.sign_test(0, 0))
