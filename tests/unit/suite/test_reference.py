"""A suite's ``reference:`` section (a paper's numbers): validated against the suite's method labels and scorers,
each problem at its key path, no trial id changed; and ``mtp-bench compare`` printing the paper's value and our gap
(mean x scale - paper) in compare.md, compare.csv and the 120-column terminal table, on a store built by hand from
the suite's own trial ids."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from rich.console import Console

from helpers import REPO, heavy_imports, make_suite, refused, write_own_store_suite, write_suite
from mtp_bench import cli
from mtp_bench.analysis.outputs import compare_suite
from mtp_bench.analysis.render import print_comparison
from mtp_bench.suite import expand_grid, load_suite
from mtp_bench.suite.reference import ReferenceConfig

METRIC = "best_on_test/test/exact_match/exact_match"
REFERENCE = {"source": "a paper, Table 1 [hand-made]", "scale": 100,
             "metrics": {METRIC: {"ntp": 38.87, "mutor": 42.10}}}
# Final values per method and seed: ntp mean 0.40, mutor mean 0.45.
VALUES = {("ntp", 0): 0.35, ("ntp", 1): 0.40, ("ntp", 2): 0.45, ("mutor", 0): 0.40, ("mutor", 1): 0.45,
          ("mutor", 2): 0.50}
# gap = mean x 100 - paper: ntp 40 - 38.87 = +1.13, mutor 45 - 42.10 = +2.90
GAPS = {"ntp": (38.87, 1.13), "mutor": (42.10, 2.90)}


def suite_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict | None, **changes) -> Path:
    path = write_own_store_suite(tmp_path, monkeypatch)
    suite = make_suite(tmp_path, base="addition", methods=[{"name": "ntp"}, {"name": "mutor"}],
                       grid={"seeds": [0, 1, 2]}, **changes)
    suite["evaluation"]["select_on"] = "test"
    if reference is not None:
        suite["reference"] = reference
    return write_suite(tmp_path, suite, path.name)


# ------------------------------------------------------------------------------------------------ validation ----
def test_reference_validates_and_changes_no_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    with_reference = load_suite(suite_with(tmp_path, monkeypatch, REFERENCE))
    assert with_reference.reference.value(METRIC, "mutor") == 42.10
    assert with_reference.reference.gap(METRIC, "mutor", 0.45) == pytest.approx(2.90)
    assert with_reference.reference.value(METRIC, "mtp_heads") is None
    without = load_suite(suite_with(tmp_path, monkeypatch, None))
    assert [t.trial_id for t in expand_grid(with_reference)] == [t.trial_id for t in expand_grid(without)]
    assert cli.main(["validate", str(suite_with(tmp_path, monkeypatch, REFERENCE))]) == 0
    assert "6 trials" in capsys.readouterr().out


BAD = [
    ("unknown method label", {METRIC: {"ntp": 38.87, "mtp_heads": 40.66}},
     f"reference.metrics.{METRIC}.mtp_heads: 'mtp_heads' is not one of the suite's method labels (ntp, mutor)"),
    ("scorer the suite does not run", {"best/test/rouge/rougeL": {"ntp": 1.0}},
     "reference.metrics.best/test/rouge/rougeL: scorer 'rouge' is not run by this suite (exact_match)"),
    ("lm-eval task the suite does not run", {"last/lm_eval/gsm8k/exact_match/strict-match": {"ntp": 1.0}},
     "reference.metrics.last/lm_eval/gsm8k/exact_match/strict-match: lm-eval task 'gsm8k' is not run by this suite"),
    ("not a final metric name", {"test/exact_match/exact_match": {"ntp": 1.0}},
     "reference.metrics: 'test/exact_match/exact_match' is not a final metric name"),
    ("no values", {METRIC: {}}, f"reference.metrics: '{METRIC}' has no values"),
]


@pytest.mark.parametrize(("metrics", "message"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_reference_is_refused_at_its_key_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                                  metrics: dict, message: str) -> None:
    path = suite_with(tmp_path, monkeypatch, {**REFERENCE, "metrics": metrics})
    refused(["validate", str(path)], capsys, tmp_path, message)


def test_reference_fields_are_checked_and_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys) -> None:
    path = suite_with(tmp_path, monkeypatch, {**REFERENCE, "scale": 0, "extra": 1})
    refused(["validate", str(path)], capsys, tmp_path, "reference.scale: Input should be greater than 0",
            "reference.extra: unknown key")
    assert all((field.description or "").strip() for field in ReferenceConfig.model_fields.values())


def test_paper_suites_carry_their_reference_and_validate_without_heavy_imports() -> None:
    """Every paper suite has a reference keyed by a metric its scorer and selection produce; validating one (the
    section included) imports none of torch, mlflow, ray, scipy, transformers, matplotlib."""
    for path in sorted((REPO / "suites" / "paper").glob("*.yaml")):
        if path.stem.startswith("imagenet"):  # the image suite reads VQ codes; tests/e2e/test_image_suites.py checks it
            continue
        suite = load_suite(path)
        assert suite.reference is not None and suite.reference.scale == 100, path.name
        prefix = "best_on_test" if suite.evaluation.select_on == "test" else "best"
        assert all(name.startswith(f"{prefix}/test/{suite.evaluation.scorers[0].name}/")
                   for name in suite.reference.metrics), path.name
        labels = {method.display_name for method in suite.methods}
        table_row = re.search(r"_t\d+_", path.stem) is None  # a Table 1/2 row, not an ablation (Tables 3-17)
        assert all(set(values) == {"ntp", "mtp_heads", "mutor"} if table_row else set(values) <= labels
                   for values in suite.reference.metrics.values()), path.name
    code = ("import contextlib, io\nfrom mtp_bench import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert cli.main(['validate', 'suites/paper/gemma2b_dialogsum.yaml']) == 0")
    assert heavy_imports(code) == []


# ------------------------------------------------------------------------------------------------- compare ----
def fill_store(suite_path: Path) -> None:
    """One finished run per trial of the suite, tagged as the harness tags them, with the referenced metric."""
    suite = load_suite(suite_path)
    (suite_path.parent / "store").mkdir(exist_ok=True)
    client = MlflowClient(tracking_uri=suite.tracking.uri)
    experiment = client.create_experiment(suite.name, artifact_location=(suite_path.parent / "artifacts").as_uri())
    for trial in expand_grid(suite):
        method = trial.method.display_name
        tags = {"mtp_bench.kind": "trial", "mtp_bench.method": method, "mtp_bench.seed": str(trial.seed),
                "mtp_bench.trial_id": trial.trial_id, "mtp_bench.cell": "", "mtp_bench.suite": suite.name,
                "mtp_bench.select_metric": "exact_match/exact_match"}
        run_id = client.create_run(experiment, tags=tags, run_name=trial.label).info.run_id
        value = VALUES[(method, trial.seed)]
        client.log_batch(run_id, metrics=[Metric(METRIC, value, 0, 2), Metric("last/test/exact_match/exact_match",
                                                                               value - 0.05, 0, 2)],
                         params=[Param("evaluation.scorers.0.name", "exact_match")])
        client.set_terminated(run_id, "FINISHED")


def test_compare_prints_paper_value_and_gap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    path = suite_with(tmp_path, monkeypatch, REFERENCE)
    fill_store(path)
    out = tmp_path / "out"
    assert cli.main(["compare", str(path), "--output", str(out)]) == 0
    capsys.readouterr()

    text = (out / "compare.md").read_text()
    assert "Paper values: a paper, Table 1 [hand-made]. Gap = our mean × 100 − paper value" in text
    header = next(line for line in text.splitlines() if line.startswith("| metric |") and "paper" in line)
    assert "| mean [95% CI] | paper | gap (mean ×100 − paper) | vs ntp Δ [95% CI] |" in header
    for method, (paper, gap) in GAPS.items():
        row = next(line for line in text.splitlines() if f"| {method} |" in line
                   and line.startswith("| test/exact_match/exact_match | best on TEST split"))
        assert f"| {paper:g} | {gap:+.3g} |" in row
    last = next(line for line in text.splitlines() if line.startswith("| test/exact_match/exact_match | last"))
    assert [cell.strip() for cell in last.split("|")][6:8] == ["", ""]  # no reference for the last checkpoint

    with (out / "compare.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["metric"] == "test/exact_match/exact_match"]
    for row in rows:
        if row["checkpoint"] == "best_on_test":
            paper, gap = GAPS[row["method"]]
            assert float(row["reference_value"]) == paper and float(row["reference_scale"]) == 100
            assert float(row["gap_to_reference"]) == pytest.approx(float(row["mean"]) * 100 - paper)
            assert float(row["gap_to_reference"]) == pytest.approx(gap)
        else:
            assert row["reference_value"] == row["gap_to_reference"] == ""

    comparison = compare_suite(load_suite(path))
    screen = io.StringIO()
    print_comparison(Console(file=screen, width=250, highlight=False, soft_wrap=True), comparison, [])
    shown = screen.getvalue()
    assert max(len(line) for line in shown.splitlines()) <= 120
    assert "paper (gap)" in shown and "38.87 (+1.13)" in shown and "42.1 (+2.9)" in shown
    assert "Table 1 [hand-made]" in shown  # brackets in the source are text, not markup


def test_reference_metric_no_run_has_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metric = "best/test/exact_match/exact_match"  # selection on validation, but the suite selects on test
    path = suite_with(tmp_path, monkeypatch, {**REFERENCE, "metrics": {metric: {"ntp": 40.0}}})
    fill_store(path)
    comparison = compare_suite(load_suite(path))
    assert comparison.unmatched_references() == [metric]
    assert all(row.paper is None for row in comparison.rows)
    screen = io.StringIO()
    print_comparison(Console(file=screen, width=120, highlight=False), comparison, [])
    assert f"No compared run has the referenced metric(s) {metric}" in " ".join(screen.getvalue().split())


# ------------------------------------------------------------------------------------------- per sweep cell ----
CELL_A1, CELL_A3 = "method.params.a=0.1", "method.params.a=0.3"  # as compare rows name mutor's cells
SWEEP_REFERENCE = {"source": "a paper, Table 17 [hand-made]", "scale": 100,
                   "metrics": {METRIC: {"ntp": 38.43, "mutor": {CELL_A1: 40.33, CELL_A3: 42.00}}}}
# Final values per (method, a, seed): ntp mean 0.40; mutor at a 0.1 mean 0.41, at a 0.3 mean 0.45.
SWEEP_VALUES = {("ntp", None): [0.35, 0.40, 0.45], ("mutor", 0.1): [0.40, 0.41, 0.42],
                ("mutor", 0.3): [0.40, 0.45, 0.50]}
# gap = mean x 100 - paper: ntp 40 - 38.43 = +1.57, a 0.1: 41 - 40.33 = +0.67, a 0.3: 45 - 42.00 = +3.00
SWEEP_GAPS = {"ntp": (38.43, 1.57), f"mutor [{CELL_A1}]": (40.33, 0.67), f"mutor [{CELL_A3}]": (42.00, 3.00)}


def sweep_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict) -> Path:
    path = suite_with(tmp_path, monkeypatch, reference)
    suite = yaml.safe_load(path.read_text())
    suite["methods"] = [{"name": "ntp"}, {"name": "mutor", "params": {"a": 0.3, "d_max": 4},
                                          "sweep": {"params.a": [0.1, 0.3]}}]
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_a_reference_value_per_sweep_cell_validates_and_is_found_by_cell(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    reference = load_suite(sweep_suite(tmp_path, monkeypatch, SWEEP_REFERENCE)).reference
    assert reference.value(METRIC, "mutor", CELL_A1) == 40.33 and reference.value(METRIC, "mutor", CELL_A3) == 42.00
    assert reference.value(METRIC, "mutor", "method.params.a=0.2") is None  # a cell the paper has no number for
    assert reference.value(METRIC, "mutor") is None  # a swept method's value is per cell only
    assert reference.value(METRIC, "ntp", "anything=1") == 38.43  # one number: every cell of its label
    assert reference.gap(METRIC, "mutor", 0.45, CELL_A3) == pytest.approx(3.00)
    # a cell of several keys matches whatever order its items are written in
    crossed = ReferenceConfig(source="s", metrics={METRIC: {"mutor": {"train.lr=0.001 method.params.a=0.1": 1.0}}})
    assert crossed.value(METRIC, "mutor", "method.params.a=0.1 train.lr=0.001") == 1.0


BAD_CELLS = [
    ("unknown cell", {"ntp": 38.43, "mutor": {CELL_A1: 40.33, "method.params.a=0.2": 41.24}},
     f"reference.metrics.{METRIC}.mutor.method.params.a=0.2: 'method.params.a=0.2' is not a grid cell of 'mutor' "
     f"(its cells: '{CELL_A1}', '{CELL_A3}')"),
    ("cells for a method without a sweep", {"ntp": {"method.params.a=0.1": 38.43}},
     f"reference.metrics.{METRIC}.ntp.method.params.a=0.1: 'method.params.a=0.1' is not a grid cell of 'ntp' "
     "(its cells: none: it has no sweep)"),
    ("short cell name", {"mutor": {"a=0.1": 40.33}}, f"reference.metrics.{METRIC}.mutor.a=0.1: 'a=0.1' is not"),
    ("empty cell mapping", {"mutor": {}}, f"reference.metrics: '{METRIC}': 'mutor' has no values (grid cell ->"),
]


@pytest.mark.parametrize(("values", "message"), [case[1:] for case in BAD_CELLS], ids=[case[0] for case in BAD_CELLS])
def test_a_bad_cell_is_refused_at_its_key_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                               values: dict, message: str) -> None:
    path = sweep_suite(tmp_path, monkeypatch, {**SWEEP_REFERENCE, "metrics": {METRIC: values}})
    refused(["validate", str(path)], capsys, tmp_path, message)


def test_compare_prints_the_paper_value_and_gap_of_each_sweep_cell(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    path = sweep_suite(tmp_path, monkeypatch, SWEEP_REFERENCE)
    suite = load_suite(path)
    (tmp_path / "store").mkdir()
    client = MlflowClient(tracking_uri=suite.tracking.uri)
    experiment = client.create_experiment(suite.name, artifact_location=(tmp_path / "artifacts").as_uri())
    for trial in expand_grid(suite):  # one finished run per trial, tagged as the harness tags them
        method = trial.method.display_name
        tags = {"mtp_bench.kind": "trial", "mtp_bench.method": method, "mtp_bench.seed": str(trial.seed),
                "mtp_bench.trial_id": trial.trial_id, "mtp_bench.suite": suite.name,
                "mtp_bench.cell": " ".join(f"{k}={v}" for k, v in sorted(trial.cell.items())),
                "mtp_bench.select_metric": "exact_match/exact_match"}
        run_id = client.create_run(experiment, tags=tags, run_name=trial.label).info.run_id
        value = SWEEP_VALUES[(method, trial.cell.get("method.params.a"))][trial.seed]
        client.log_batch(run_id, metrics=[Metric(METRIC, value, 0, 2)],
                         params=[Param("evaluation.scorers.0.name", "exact_match")])
        client.set_terminated(run_id, "FINISHED")
    out = tmp_path / "out"
    assert cli.main(["compare", str(path), "--output", str(out)]) == 0
    capsys.readouterr()
    lines = (out / "compare.md").read_text().splitlines()
    for label, (paper, gap) in SWEEP_GAPS.items():
        row = next(line for line in lines if f"| {label} |" in line and line.startswith("| test/exact_match/"))
        assert f"| {paper:g} | {gap:+.3g} |" in row, row
    with (out / "compare.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(float(r["reference_value"]) for r in rows if r["reference_value"]) == [38.43, 40.33, 42.0]
    screen = io.StringIO()
    print_comparison(Console(file=screen, width=250, highlight=False, soft_wrap=True), compare_suite(suite), [])
    assert "40.33 (+0.67)" in screen.getvalue() and "42 (+3)" in screen.getvalue()


PAPER_CELLS = {  # arXiv 2505.10518, GSM8K column (../shared/notes/paper-protocol.md)
    "gemma2b_t4_dmax": {"ntp": {"": 38.87},
                        "mtp_heads": {f"method.params.n_future={d}": v for d, v in
                                      [(2, 40.66), (3, 40.59), (4, 39.78), (6, 40.23)]},
                        "mutor": {f"method.params.d_max={d}": v for d, v in
                                  [(2, 41.93), (3, 41.60), (4, 42.10), (6, 39.90)]}},
    "gemma2b_t17_loss_weight": {"ntp": {"": 38.43},
                                "mutor": {f"method.params.a={a}": v for a, v in
                                          [(0.1, 40.33), (0.2, 41.24), (0.3, 42.00), (0.4, 40.94), (0.5, 40.78)]}},
}


@pytest.mark.parametrize("stem", sorted(PAPER_CELLS))
def test_the_sweep_ablations_carry_the_papers_number_for_every_cell(stem: str) -> None:
    suite = load_suite(REPO / "suites" / "paper" / f"{stem}.yaml")
    metric = "best_on_test/test/gsm8k/exact_match"
    found = {}
    for trial in expand_grid(suite):  # every cell the suite runs, named as its runs are tagged
        cell = " ".join(f"{k}={v}" for k, v in sorted(trial.cell.items()))
        found.setdefault(trial.method.display_name, {})[cell] = suite.reference.value(metric, trial.method.display_name,
                                                                                   cell)
    assert found == PAPER_CELLS[stem]


# Tables 9, 13, 14 and 15 (arXiv 2505.10518, NeurIPS version), copied from the paper's tables a second time, apart
# from the suites, so a slip in either copy fails here
LATER_TABLES = {
    "imagenet_llamagen_b_t9_dmax2d": {
        "last/test/image/fid": {"mutor_2d_dmax3": 5.56, "mutor_2d_dmax4": 5.03, "mutor_2d_dmax5": 5.53},
        "last/test/image/inception_score": {"mutor_2d_dmax3": 178.3, "mutor_2d_dmax4": 195.6,
                                            "mutor_2d_dmax5": 179.2}},
    "gemma2b_t13_samsum_epochs5": {"best/test/rouge/rouge1": {"ntp": 51.67, "mtp_heads": 51.04},
                                   "best/test/rouge/rouge2": {"ntp": 27.64, "mtp_heads": 26.35},
                                   "best/test/rouge/rougeL": {"ntp": 43.32, "mtp_heads": 42.48}},
    "gemma2b_t13_dialogsum_epochs5": {"best/test/rouge/rouge1_per_reference": {"ntp": 46.92, "mtp_heads": 47.46},
                                      "best/test/rouge/rouge2_per_reference": {"ntp": 20.39, "mtp_heads": 20.76},
                                      "best/test/rouge/rougeL_per_reference": {"ntp": 38.25, "mtp_heads": 38.97}},
    "llama3_8b_t14_epochs10": {"best_on_test/test/gsm8k/exact_match": {"ntp": 64.74, "mtp_heads": 65.20}},
    "imagenet_llamagen_b_t15_ntp500k": {"last/test/image/fid": {"ntp_500k": 5.82},
                                        "last/test/image/inception_score": {"ntp_500k": 175.8}},
}


@pytest.mark.parametrize("stem", sorted(LATER_TABLES))
def test_the_later_tables_carry_the_papers_numbers(stem: str) -> None:
    suite = yaml.safe_load((REPO / "suites" / "paper" / f"{stem}.yaml").read_text())
    assert suite["reference"]["metrics"] == LATER_TABLES[stem]
    labels = {method.get("label", method["name"]) for method in suite["methods"]}
    assert {label for values in LATER_TABLES[stem].values() for label in values} == labels  # every method, no more
