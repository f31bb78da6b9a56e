"""``mtp-bench compare`` on a store built by hand: intervals and tests over seeds, the within-seed McNemar tests and
the partial-grid listing checked against numbers worked out independently (t quantiles from tables, binomial sums by
hand, scipy), plus the rendering of one and two seeds, the verdict line and the 120-column terminal table."""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from rich.console import Console
from scipy import stats as scipy_stats

from helpers import make_suite, write_suite
from mtp_bench import cli
from mtp_bench.analysis import stats
from mtp_bench.analysis.comparison import build_comparison
from mtp_bench.analysis.names import bounds, classify, human_label, is_bounded, short_name
from mtp_bench.analysis.render import print_comparison
from mtp_bench.analysis.runs import shared_cell
from mtp_bench.tracking.store import Store

T_975_DF2 = 4.302652729911275  # two-sided 95% Student-t quantile, 2 degrees of freedom (from a t table)
N_QUESTIONS = 20
# Questions each trial got right (strict exact match). Accuracies: ntp 0.40/0.45/0.50, mutor 0.50/0.55/0.60.
CORRECT = {
    ("ntp", 0): set(range(0, 8)), ("ntp", 1): set(range(0, 9)), ("ntp", 2): set(range(0, 10)),
    ("mutor", 0): set(range(0, 10)), ("mutor", 1): set(range(0, 10)) | {12}, ("mutor", 2): set(range(2, 14)),
}
HELD_OUT_LOSS = {("ntp", 0): 2.0, ("ntp", 1): 2.1, ("ntp", 2): 2.3, ("mutor", 0): 1.9, ("mutor", 1): 2.05,
                 ("mutor", 2): 2.1}


def add_trial(client: MlflowClient, experiment: str, method: str, seed: int, *, status: str = "FINISHED",
              metrics: dict[str, float] | None = None, correct: set[int] | None = None, start: int = 0,
              error: str | None = None) -> str:
    tags = {"mtp_bench.kind": "trial", "mtp_bench.method": method, "mtp_bench.seed": str(seed),
            "mtp_bench.trial_id": f"{method}-{seed}", "mtp_bench.cell": "", "mtp_bench.suite": "handmade",
            "mtp_bench.select_metric": "gsm8k/exact_match", "mtp_bench.periodic_split": "val"}
    if error:
        tags["mtp_bench.error"] = error
    run_id = client.create_run(experiment, start_time=1_000_000 + start, tags=tags, run_name=f"{method} {seed}")
    run_id = run_id.info.run_id
    values = [Metric(name, value, 0, 10) for name, value in (metrics or {}).items()]
    values += [Metric("val/gsm8k/exact_match", 0.1, 0, 5),  # the periodic curve
               Metric("val/gsm8k/exact_match", len(correct or ()) / N_QUESTIONS, 0, 10)]
    client.log_batch(run_id, metrics=values, params=[Param("evaluation.scorers.0.name", "gsm8k")])
    if correct is not None:
        rows = [{"index": i, "correct": i in correct, "scores": {"exact_match": i in correct}}
                for i in range(N_QUESTIONS)]
        for checkpoint in ("last", "best_on_test"):
            client.log_text(run_id, "".join(json.dumps(r) + "\n" for r in rows),
                            f"predictions/{checkpoint}/test_gsm8k.jsonl")
    client.set_terminated(run_id, status)
    return run_id


@pytest.fixture(scope="module")
def handmade(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Built once per module (creating an MLflow store takes seconds); tests only read it."""
    tmp_path = tmp_path_factory.mktemp("handmade")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("handmade", artifact_location=(tmp_path / "artifacts").as_uri())
    # An older finished repeat of ntp seed 0 with a different result: only the newest run of a trial counts.
    add_trial(client, experiment, "ntp", 0, metrics={"last/test/gsm8k/exact_match": 0.9}, start=-500)
    for (method, seed), correct in CORRECT.items():
        accuracy = len(correct) / N_QUESTIONS
        metrics = {"last/test/gsm8k/exact_match": accuracy, "best_on_test/test/gsm8k/exact_match": accuracy,
                   "last/test/loss": HELD_OUT_LOSS[(method, seed)], "last/test/acc/ntp": 0.3,
                   "params/extra": 64.0 if method == "mutor" else 0.0,
                   "train/flops_total": 1.4e12 if method == "mutor" else 1.0e12}
        add_trial(client, experiment, method, seed, metrics=metrics, correct=correct, start=seed)
    add_trial(client, experiment, "mutor", 3, status="FAILED", error="RuntimeError: out of memory", start=10)
    add_trial(client, experiment, "mutor", 4, status="RUNNING", start=11)
    return uri


def _row(comparison, metric: str, method: str, checkpoint: str = "last"):
    return next(r for r in comparison.rows
                if r.metric == metric and r.group.method == method and r.checkpoint == checkpoint)


def test_interval_and_paired_test_match_hand_computation(handmade: str) -> None:
    comparison = build_comparison(Store(handmade, "handmade"), title="t", baseline="ntp")
    mutor = _row(comparison, "test/gsm8k/exact_match", "mutor")
    # A bounded metric: a t-interval over the seeds 0.50, 0.55, 0.60 (SD 0.05), inside [0, 1] so not clipped.
    half = T_975_DF2 * 0.05 / math.sqrt(3)
    assert mutor.summary.n == 3 and mutor.summary.interval == "t over seeds" and not mutor.summary.clipped
    assert mutor.summary.mean == pytest.approx(0.55)
    assert (mutor.summary.low, mutor.summary.high) == pytest.approx((0.55 - half, 0.55 + half))
    ntp = _row(comparison, "test/gsm8k/exact_match", "ntp")
    assert ntp.summary.mean == pytest.approx(0.45)  # the older 0.9 repeat is ignored
    assert ntp.paired is None  # the baseline is not tested against itself
    paired = mutor.paired
    # Per-seed differences 0.50-0.40, 0.55-0.45, 0.60-0.50: all +0.10, so the paired t is undefined (no spread),
    # the exact permutation test gives 2 of 2^3 sign patterns as extreme and the sign test 3 wins of 3: 2/8.
    assert paired.differences == pytest.approx((0.10, 0.10, 0.10))
    assert paired.delta == pytest.approx(0.10)
    assert math.isnan(paired.p_t)
    assert paired.p_permutation == pytest.approx(0.25) and paired.p_sign == pytest.approx(0.25)
    assert (paired.wins, paired.losses) == (3, 0)
    # No spread over seeds: no seed-level interval (never a zero-width one). The two-level bootstrap over seeds and
    # questions is still there, as within-test-set evidence.
    assert not paired.has_ci and paired.interval == "" and paired.note == stats.SAME_DIFFERENCE
    assert paired.has_two_level and -1 <= paired.two_level[0] <= 0.10 <= paired.two_level[1] <= 1
    # Within seed, McNemar on the discordant questions: seed 0 mutor-only {8, 9}, none the other way: 2 * (1/4);
    # seed 1 {9, 12}: 0.5; seed 2 mutor-only {10..13}, ntp-only {0, 1}: 2 * P(Binomial(6, 1/2) <= 2) = 44/64.
    within = {w.seed: w for w in paired.within}
    assert [(within[s].method_only, within[s].baseline_only) for s in (0, 1, 2)] == [(2, 0), (2, 0), (4, 2)]
    assert [within[s].p_value for s in (0, 1, 2)] == pytest.approx([0.5, 0.5, 44 / 64])


def test_seed_level_paired_t_and_cost_ratio(handmade: str) -> None:
    comparison = build_comparison(Store(handmade, "handmade"), title="t", baseline="ntp")
    loss = _row(comparison, "test/loss", "mutor")
    differences = np.array([1.9 - 2.0, 2.05 - 2.1, 2.1 - 2.3])
    half = T_975_DF2 * differences.std(ddof=1) / math.sqrt(3)
    assert loss.section == "held-out loss" and loss.paired.interval == "t over seeds" and not loss.paired.within
    assert not loss.paired.clipped  # a difference of losses has no range to clip to
    losses = np.array([1.9, 2.05, 2.1])
    loss_half = T_975_DF2 * losses.std(ddof=1) / math.sqrt(3)
    assert loss.summary.interval == "t over seeds" and loss.summary.low >= 0  # a loss is never negative
    assert (loss.summary.low, loss.summary.high) == pytest.approx((losses.mean() - loss_half,
                                                                    losses.mean() + loss_half))
    assert loss.paired.delta == pytest.approx(differences.mean())
    assert (loss.paired.low, loss.paired.high) == pytest.approx((differences.mean() - half, differences.mean() + half))
    assert loss.paired.p_t == pytest.approx(scipy_stats.ttest_rel([1.9, 2.05, 2.1], [2.0, 2.1, 2.3]).pvalue)
    assert loss.paired.p_permutation == pytest.approx(2 / 8)  # all three negative: 2 of 8 sign patterns
    assert _row(comparison, "test/acc/ntp", "mutor").section == "per-horizon accuracy"
    flops = _row(comparison, "train/flops_total", "mutor", checkpoint="")
    assert flops.section == "cost" and flops.ratio == pytest.approx(1.4)


def test_partial_grid_is_listed_and_the_cli_writes_every_output(handmade: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = cli.main(["compare", "--experiment", "handmade", "--store", handmade, "--output", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"compare.md", "compare.csv", "accuracy.png",
                                               "accuracy_over_steps.png", "provenance.yaml"}
    text = (out / "compare.md").read_text()
    assert "out of memory" in text and "RUNNING" in text  # failed and running trials are listed, not fatal
    assert "older repeat" in text
    assert "TEST split" in text and "optimistic" in text  # selection on test is labelled
    assert "Within-seed evidence (conditional on these trained models)" in text
    with (out / "compare.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    row = next(r for r in rows if r["metric"] == "test/gsm8k/exact_match" and r["method"] == "mutor"
               and r["checkpoint"] == "best_on_test")
    assert row["checkpoint_label"].startswith("best on TEST split")
    assert float(row["p_permutation"]) == pytest.approx(0.25) and row["delta_interval"] == ""
    assert row["delta_note"] == stats.SAME_DIFFERENCE and row["delta_ci_low"] == "nan"
    assert float(row["delta_two_level_low"]) <= 0.1 <= float(row["delta_two_level_high"])
    assert row["verdict"] == ("not shown (with 3 seeds the exact test cannot reach p < 0.05 (smallest possible p "
                              "0.25); run ≥ 6)")  # no spread: no power estimate, so no seeds-needed clause
    # The verdict is the headline metric at the checkpoint selected on validation, else the last one (here).
    assert "## Verdict" in text and text.index("## Verdict") < text.index("**How to read this.**")
    assert ("- mutor vs ntp: +0.1 (the same every seed) over 3 seeds, 3/3 higher, p = 0.25 → not shown (with 3 seeds "
            "the exact test cannot reach p < 0.05") in text
    assert "Within-seed evidence" in text and "two-level bootstrap 95%" in text
    assert row["n"] == "3" and row["seeds"] == "0 1 2" and row["values"] == "0.5 0.55 0.6"
    provenance = yaml.safe_load((out / "provenance.yaml").read_text())
    assert provenance["metric"] == "test/gsm8k/exact_match"
    assert provenance["values"]["mutor"]["2"] == {"last": 0.6, "best_on_test": 0.6}


def test_cli_errors_name_the_problem(handmade: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["compare", "--experiment", "nope", "--store", handmade, "--output", str(tmp_path)]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path / 'absent.db'}"
    assert cli.main(["compare", "--experiment", "x", "--store", missing]) == 2
    assert "no MLflow store" in capsys.readouterr().err
    assert not (tmp_path / "absent.db").exists()  # reading never creates a store


def test_terminal_table_fits_120_columns(handmade: str) -> None:
    comparison = build_comparison(Store(handmade, "handmade"), title="t", baseline="ntp")
    screen = io.StringIO()
    print_comparison(Console(file=screen, width=250, highlight=False, soft_wrap=True), comparison, [])
    lines = screen.getvalue().splitlines()
    assert lines and max(len(line) for line in lines) <= 120
    assert "gsm8k/exact_match" in screen.getvalue()  # the short name, "test/" dropped
    verdict = lines.index(next(line for line in lines if line.startswith("Verdict on test/gsm8k/exact_match")))
    assert any(line.startswith("mutor vs ntp: +0.1 (the same every seed) over 3 seeds, 3/3 higher")
               for line in lines[verdict:])
    assert lines[-1].strip().endswith("run ≥ 6)")  # the verdict is the last thing on screen (nothing written here)


def test_metric_classification_bounds_and_names() -> None:
    scorers = {"gsm8k"}
    assert classify("best_on_test/test/gsm8k/exact_match", scorers) == ("scores", "best_on_test",
                                                                       "test/gsm8k/exact_match")
    assert classify("last/test/acc/h3", scorers)[0] == "per-horizon accuracy"
    assert classify("last/test/loss/ntp", scorers)[0] == "held-out loss"
    assert classify("last/lm_eval/gsm8k_local/exact_match/strict-match", scorers)[0] == "scores"
    assert classify("last/lm_eval/gsm8k_local/exact_match_stderr/strict-match", scorers) is None
    assert classify("best/step", scorers)[0] == "selected checkpoint"
    assert classify("train/loss", scorers) is None
    assert shared_cell("method.params.a=0.1 train.lr=[1, 2]") == "train.lr=[1, 2]"
    bounded = ["test/exact_match/exact_match", "test/acc/h2", "val/star_graph/first_step_accuracy",
               "test/star_graph/valid_path_rate", "lm_eval/gsm8k_local/exact_match/strict-match", "acceptance/h2",
               "test/rouge/rougeL", "test/multiple_choice/accuracy_flexible", "test/gsm8k/exact_match_flexible",
               "lm_eval/arc_easy/acc_norm/none"]
    unbounded = ["test/loss/ntp", "train/flops_total", "params/extra", "step", "test/speculative/tau",
                 "test/speculative/speedup", "train/lr"]
    assert all(is_bounded(m) for m in bounded) and not any(is_bounded(m) for m in unbounded)
    assert human_label("test/exact_match/exact_match") == "test exact match"
    assert human_label("step") == "optimiser step"
    assert human_label("val/gsm8k/exact_match") == "validation GSM8K exact match"
    # MuToR-2D's per-offset accuracies (rows down, columns right) are per-horizon rows, bounded, read as offsets
    assert classify("last/test/acc/h1_-1", scorers) == ("per-horizon accuracy", "last", "test/acc/h1_-1")
    assert is_bounded("test/acc/h0_2")
    # image metrics: consistency is a proportion; distances and Inception-style scores are only non-negative
    assert is_bounded("test/image/class_consistency") and is_bounded("test/image/validity_rate")
    assert bounds("test/image/classifier_frechet_distance") == bounds("test/image/classifier_score") == (0.0, math.inf)
    assert human_label("val/acc/h1_-1") == "validation accuracy offset (1,-1)"
    assert short_name("test/exact_match/exact_match") == "exact_match"


@pytest.mark.slow
def test_run_then_compare_end_to_end(tmp_path: Path, gsm8k_dir: Path, store: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Two identical methods x two seeds with lm-eval: the run writes the comparison (and attaches it to the parent
    run); identical training gives a zero difference and p = 1."""
    monkeypatch.chdir(tmp_path)
    suite = make_suite(tmp_path, gsm8k_dir, methods=[{"name": "ntp"}, {"name": "ntp", "label": "ntp_copy"}],
                       grid={"seeds": [0, 1]})
    suite["evaluation"]["lm_eval"] = {"tasks": ["gsm8k_mutor_local"], "limit": 2, "max_gen_toks": 4,
                                      "data_dir": str(gsm8k_dir)}
    path = write_suite(tmp_path, suite)
    assert cli.main(["run", str(path), "--no-ray"]) == 0
    assert (tmp_path / "results" / "tiny" / "compare.md").is_file()
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    parent = next(r for r in runs if r.data.tags["mtp_bench.kind"] == "invocation")
    attached = {a.path for a in client.list_artifacts(parent.info.run_id, "compare")}
    assert {"compare/compare.md", "compare/compare.csv", "compare/accuracy.png"} <= attached
    child = next(r for r in runs if r.data.tags["mtp_bench.kind"] == "trial")
    assert "last/lm_eval/gsm8k_mutor_local/exact_match/strict-match" in child.data.metrics
    assert child.data.params["lm_eval.version"] == importlib.metadata.version("lm_eval")
    assert child.data.tags["mtp_bench.select_metric"] == "gsm8k/exact_match"

    out = tmp_path / "again"
    assert cli.main(["compare", str(path), "--output", str(out)]) == 0
    with (out / "compare.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    copy = next(r for r in rows if r["method"] == "ntp_copy" and r["checkpoint"] == "last"
                and r["metric"] == "test/gsm8k/exact_match")
    assert copy["n"] == "2" and float(copy["delta"]) == 0 and float(copy["p_permutation"]) == 1
    assert copy["delta_note"] == "two seeds: no interval" and copy["delta_ci_low"] == "nan"
    assert copy["verdict"] == "not shown (2 seeds cannot show a difference; run ≥ 6)"
    assert copy["delta_two_level_low"] == "nan"  # no interval of any kind from two seeds
    lm_eval_rows = [r for r in rows if r["metric"].startswith("lm_eval/") and r["method"] == "ntp_copy"]
    assert lm_eval_rows and all(r["within_seed"] == "0:1(0/0) 1:1(0/0)" for r in lm_eval_rows)
