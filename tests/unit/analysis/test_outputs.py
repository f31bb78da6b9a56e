"""Where a comparison's files go, and what its provenance.yaml records: committed results are never overwritten by
surprise (``results/local/<suite>/`` instead, said aloud; ``--output`` replaces them on purpose), and the provenance
names which trials ran at which commit and in which environment."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric

from helpers import REPO
from mtp_bench import cli
from mtp_bench.analysis.outputs import output_folder
from mtp_bench.tracking.provenance import environment_tags

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

OLD, NEW = "1" * 40, "2" * 40
VALUES = {("ntp", 0): 0.25, ("ntp", 1): 0.5, ("mutor", 0): 0.5, ("mutor", 1): 0.75}


def _environment(capability: str) -> dict:
    return {"python": "3.11.7", "platform": "Linux", "cpu": "AMD EPYC (AuthenticAMD)", "cpu_capability": capability,
            "torch_threads": 1, "torch_interop_threads": 1, "packages": {"torch": "2.5.1"},
            "env": {"ATEN_CPU_CAPABILITY": None}}


def _store(folder: Path) -> str:
    """Two methods x two seeds; seed 0 ran at commit OLD on an AVX-512 machine, seed 1 at NEW with AVX2."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("handmade", artifact_location=(folder / "artifacts").as_uri())
    for (method, seed), value in VALUES.items():
        tags = {"mtp_bench.kind": "trial", "mtp_bench.method": method, "mtp_bench.seed": str(seed),
                "mtp_bench.trial_id": f"{method}-{seed}", "mtp_bench.cell": "", "mtp_bench.suite": "handmade",
                "mtp_bench.select_metric": "gsm8k/exact_match", "mlflow.source.git.commit": NEW if seed else OLD,
                **environment_tags(_environment("AVX2" if seed else "AVX512"))}
        run = client.create_run(experiment, tags=tags, run_name=f"{method} {seed}").info.run_id
        client.log_batch(run, metrics=[Metric("last/test/gsm8k/exact_match", value, 0, 10)])
        client.set_terminated(run, "FINISHED")
    return uri


def _checkout(path: Path) -> None:
    """A repository with committed results for the suite ``handmade``."""
    (path / "results" / "handmade").mkdir(parents=True)
    (path / "results" / "handmade" / "compare.md").write_text("committed\n")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "i"]):
        subprocess.run(["git", *args], cwd=path, check=True)


def test_the_default_folder_steps_aside_from_committed_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert output_folder("handmade") == (Path("results/handmade"), None)  # no repository: as before
    _checkout(tmp_path)
    folder, note = output_folder("handmade")
    assert folder == Path("results/local/handmade")
    assert note is not None and "results/handmade/ holds committed results" in note and "--output" in note
    assert output_folder("other") == (Path("results/other"), None)  # nothing committed there
    assert output_folder("handmade", "results/handmade") == (Path("results/handmade"), None)  # on purpose


def test_compare_keeps_committed_results_and_records_commits_and_environments(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    repo = tmp_path / "checkout"
    repo.mkdir()
    _checkout(repo)
    uri = _store(tmp_path)
    monkeypatch.chdir(repo)
    assert cli.main(["compare", "--experiment", "handmade", "--store", uri]) == 0
    out = capsys.readouterr().out
    assert "holds committed results" in " ".join(out.split())
    assert (repo / "results" / "handmade" / "compare.md").read_text() == "committed\n"  # untouched
    record = yaml.safe_load((repo / "results" / "local" / "handmade" / "provenance.yaml").read_text())
    assert sorted(record["commits"]) == [OLD, NEW]
    assert record["trials_by_commit"] == {OLD: {"ntp": [0], "mutor": [0]}, NEW: {"ntp": [1], "mutor": [1]}}
    by_capability = {env["cpu_capability"]: env for env in record["environment"]}
    assert set(by_capability) == {"AVX512", "AVX2"}
    assert by_capability["AVX2"]["trials"] == {"ntp": [1], "mutor": [1]}
    assert by_capability["AVX2"]["torch_threads"] == 1 and by_capability["AVX2"]["packages"]["torch"] == "2.5.1"
    assert record["written_on"]["python"] and record["written_on"]["packages"]["mtp-bench"]
    # git ignores the redirected folder in this project's checkout
    assert subprocess.run(["git", "check-ignore", "-q", "results/local/handmade/compare.md"],
                          cwd=REPO).returncode == 0

    # Named on purpose, the committed folder is replaced.
    assert cli.main(["compare", "--experiment", "handmade", "--store", uri, "--output", "results/handmade"]) == 0
    assert (repo / "results" / "handmade" / "compare.md").read_text() != "committed\n"
    assert "holds committed results" not in " ".join(capsys.readouterr().out.split())
