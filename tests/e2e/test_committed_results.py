"""The README's main job reproduces exactly: one committed trial of results/quickstart/ is re-run at this commit,
through the public `reproduce` command, and must give the committed value to the last bit.

A change that moves the numbers (code, a library, the CPU kernels) fails here until the results are re-issued on
purpose (`mtp-bench run suites/quickstart.yaml --output results/quickstart`, then this test again). The trial is one
that *learns* — its committed value is the one nearest 0.5, where a trajectory that changed at all shows it — not a
trial stuck at 0, which a broken change could leave at 0 too.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from helpers import REPO

QUICKSTART = REPO / "results" / "quickstart"


def learning_trial(record: dict) -> tuple[str, int, float]:
    """(method, seed, committed value at the selected checkpoint) of the trial nearest 0.5."""
    values = [(method, int(seed), checkpoints["best"]) for method, seeds in record["values"].items()
              for seed, checkpoints in seeds.items()]
    return min(values, key=lambda item: (abs(item[2] - 0.5), item[0], item[1]))


def test_the_committed_quickstart_has_a_learning_trial_and_six_seeds():
    record = yaml.safe_load((QUICKSTART / "provenance.yaml").read_text())
    assert record["suite"] == "suites/quickstart.yaml" and not record.get("overrides")
    assert all(len(seeds) >= 6 for seeds in record["values"].values())
    _, _, value = learning_trial(record)
    assert 0.2 < value < 0.98


@pytest.mark.slow
def test_a_committed_quickstart_trial_reproduces_exactly(tmp_path):
    record = yaml.safe_load((QUICKSTART / "provenance.yaml").read_text())
    method, seed, value = learning_trial(record)
    done = subprocess.run(
        [sys.executable, "-m", "mtp_bench.analysis.reproduce", str(QUICKSTART), "--method", method, "--seed",
         str(seed), "--allow-other-commit", "--workdir", str(tmp_path)],  # the results were made one commit back
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"best/{record['metric']}: committed {value!r}, re-run {value!r}: same" in done.stdout
    assert f"{method} seed {seed} reproduces" in done.stdout
