"""A committed result reproduces: ``mtp-bench run`` writes ``provenance.yaml`` beside its comparison, and
``python -m mtp_bench.analysis.reproduce`` re-runs one seed of one method from it and finds the same value (CPU runs
are deterministic); a tampered committed value fails with exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtp_bench import cli
from mtp_bench.analysis import reproduce


@pytest.mark.slow
def test_one_seed_of_a_run_reproduces_and_a_changed_value_does_not(tmp_path: Path, gsm8k_dir: Path, store: str,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    from conftest import tiny_suite, write_suite

    monkeypatch.chdir(tmp_path)  # the run writes results/<suite>/ under the working directory
    suite = tiny_suite(tmp_path, gsm8k_dir, methods=[{"name": "ntp"}, {"name": "mutor", "params": {"d_max": 2}}],
                       grid={"seeds": [0, 1]})
    path = write_suite(tmp_path, suite)
    assert cli.main(["run", str(path), "--no-ray"]) == 0
    folder = tmp_path / "results" / "tiny"
    record = yaml.safe_load((folder / "provenance.yaml").read_text())
    assert record["suite"] == str(path) and record["metric"] == "test/gsm8k/exact_match"
    assert set(record["values"]) == {"ntp", "mutor"} and set(record["values"]["mutor"]) == {"0", "1"}
    assert record["command"] == f"mtp-bench run {path}"

    capsys.readouterr()
    workdir = tmp_path / "rerun"
    assert reproduce.main([str(folder), "--method", "mutor", "--seed", "1", "--workdir", str(workdir)]) == 0
    assert "mutor seed 1 reproduces" in capsys.readouterr().out

    # The same re-run against a committed value that differs: exit 1, naming the metric.
    overrides, trial_id = reproduce.narrowed_overrides(record, "mutor", 1)
    record["values"]["mutor"]["1"]["last"] += 0.25
    with pytest.raises(reproduce.RunFailed, match="DIFFERENT"):
        reproduce.check(record, "mutor", 1, f"sqlite:///{workdir / 'mlflow.db'}", trial_id, 0.0)
    assert reproduce.main([str(folder), "--method", "medusa", "--seed", "0"]) == 2  # not in the suite
