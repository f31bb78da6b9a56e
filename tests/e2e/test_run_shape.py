"""The run shape that the MLflow UI and ``mtp-bench compare`` rely on, read back from a real (tiny) suite run: one
parent run per invocation, one child per trial tagged with suite, method, seed, trial id and git commit, the same
metric names for every method, and the comparison plot and table attached to the parent."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import REPO, find_gsm8k, write_two_method_suite
from mtp_bench import tracking
from mtp_bench.cli import main
from mtp_bench.suite import expand_grid, load_suite

SUITE = "shape_tiny"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OVERRIDES = ["train.lr=0.002"]  # recorded on the parent run: suite.resolved.yaml and the overrides tag


@pytest.fixture(scope="module")
def shaped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One in-process run of a 2-method x 2-seed suite into a throwaway store, shared by the tests below."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("shape")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MTP_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        patch.chdir(folder)  # `compare` writes results/<suite>/ under the working directory
        path = write_two_method_suite(folder, find_gsm8k(), SUITE, seeds=(0, 1))
        assert main(["run", str(path), "--no-ray", *OVERRIDES]) == 0
        suite = load_suite(path, OVERRIDES)
        trials = expand_grid(suite)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(SUITE)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    return {"client": client, "suite": suite, "trials": trials, "runs": runs}


def _kind(runs: list[Any], kind: str) -> list[Any]:
    return [run for run in runs if run.data.tags.get(tracking.TAG_KIND) == kind]


@pytest.mark.slow
def test_one_parent_per_invocation_and_one_tagged_child_per_trial(shaped: dict[str, Any]) -> None:
    runs, trials = shaped["runs"], shaped["trials"]
    parents, children = _kind(runs, "invocation"), _kind(runs, "trial")
    assert len(parents) == 1 and len(children) == len(trials) == 4 and len(runs) == 5
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert tracking.TAG_PARENT not in parent.data.tags
    assert parent.data.tags[tracking.TAG_SUITE] == SUITE

    commit = tracking.git_commit(REPO)
    expected = {trial.trial_id: trial for trial in trials}
    for run in children:
        tags = run.data.tags
        trial = expected.pop(tags[tracking.TAG_TRIAL_ID])  # each trial id exactly once
        assert run.info.status == "FINISHED"
        assert tags[tracking.TAG_PARENT] == parent.info.run_id
        assert tags[tracking.TAG_SUITE] == SUITE
        assert tags[tracking.TAG_METHOD] == trial.method.display_name
        assert tags[tracking.TAG_SEED] == str(trial.seed)
        assert run.info.run_name == trial.label  # "ntp seed=0": what the UI lists and the browser test looks for
        if commit:  # the harness is a git checkout: its commit names the code that ran, wherever the run started
            assert tags.get(tracking.TAG_GIT) == commit, "the trial run does not carry the mtp-bench commit"
    assert not expected
    assert {run.data.tags[tracking.TAG_SEED] for run in children} == {"0", "1"}


@pytest.mark.slow
def test_every_method_logs_the_baselines_metric_names(shaped: dict[str, Any]) -> None:
    """Runs compare side by side only if a metric means the same thing under the same name for every method; a
    multi-token method may add its own terms (per-horizon losses), never rename the shared ones."""
    names: dict[str, list[set[str]]] = defaultdict(list)
    for run in _kind(shaped["runs"], "trial"):
        names[run.data.tags[tracking.TAG_METHOD]].append(set(run.data.metrics))
    baseline = names[shaped["suite"].baseline][0]
    assert {"train/loss", "val/loss", "best/test/loss", "best/test/gsm8k/exact_match"} <= baseline
    for method, per_seed in names.items():
        assert all(seen == per_seed[0] for seen in per_seed), f"{method}: metric names differ between seeds"
        assert baseline <= per_seed[0], f"{method} lacks {sorted(baseline - per_seed[0])}"

    client, child = shaped["client"], _kind(shaped["runs"], "trial")[0]
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/loss")]
    assert steps == [1, 2]  # validated at every step: the UI's chart over steps has one point per evaluation


def _files(client: Any, run_id: str, folder: str | None = None) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, folder):
        out += _files(client, run_id, item.path) if item.is_dir else [item.path]
    return out


@pytest.mark.slow
def test_parent_run_carries_the_comparison_artifacts(shaped: dict[str, Any], tmp_path: Path) -> None:
    client, parent = shaped["client"], _kind(shaped["runs"], "invocation")[0]
    files = _files(client, parent.info.run_id)
    assert {"suite.yaml", "suite.resolved.yaml", "trials.json"} <= set(files)
    raw = yaml.safe_load(Path(client.download_artifacts(parent.info.run_id, "suite.yaml", str(tmp_path))).read_text())
    resolved = yaml.safe_load(
        Path(client.download_artifacts(parent.info.run_id, "suite.resolved.yaml", str(tmp_path))).read_text())
    assert "lr" not in raw["train"] and resolved["train"]["lr"] == pytest.approx(0.002)  # the override, applied
    assert resolved == shaped["suite"].model_dump(mode="json")
    assert json.loads(parent.data.tags["mtp_bench.overrides"]) == OVERRIDES
    for child in _kind(shaped["runs"], "trial"):
        assert "trial.yaml" in _files(client, child.info.run_id)
    plots = [f for f in files if f.endswith(".png")]
    tables = [f for f in files if f.endswith((".csv", ".md"))]
    assert plots and tables, f"no comparison plot and table among the parent's artifacts: {files}"
    for plot in plots:
        local = Path(client.download_artifacts(parent.info.run_id, plot, str(tmp_path)))
        assert local.read_bytes()[:8] == PNG_MAGIC, f"{plot} is not a PNG"
    labels = [method.display_name for method in shaped["suite"].methods]
    for table in tables:
        text = Path(client.download_artifacts(parent.info.run_id, table, str(tmp_path))).read_text()
        assert all(label in text for label in labels), f"{table} does not name every method ({labels})"
