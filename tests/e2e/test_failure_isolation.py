"""Failure isolation on Ray: a trial that raises, one whose loss turns NaN and one whose process dies are each marked
FAILED in MLflow with their error; the others finish; retries continue from the checkpoint in the same run (or,
without a checkpoint, start a new run and mark the lost attempt's superseded: no step recorded twice).

Failures are injected with a Ray ``worker_process_setup_hook`` that wraps ``Trainer.train_step`` in every worker
process, driven by a plan file the test writes: no test hook in the product code. One Ray instance serves the module.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import local_ray_with_failure_plan, make_suite, write_failure_plan, write_suite
from mtp_bench.scheduler import FAILED, FINISHED, run_suite
from mtp_bench.suite import expand_grid, load_suite

pytestmark = [pytest.mark.ray, pytest.mark.slow]
PLAN = Path(os.environ.get("PYTEST_FAILURE_PLAN", f"/tmp/mtp-bench-failure-plan-{os.getpid()}.json"))


@pytest.fixture(scope="module", autouse=True)
def ray_with_injection(tmp_path_factory):
    with local_ray_with_failure_plan(tmp_path_factory.getbasetemp(), PLAN):
        yield


def test_raising_and_nan_trials_fail_alone_and_the_command_exits_non_zero(tmp_path, gsm8k_dir, store, capsys):
    from mtp_bench.cli import main
    from mtp_bench.tracking import TAG_ERROR, Tracker

    write_failure_plan(PLAN, [{"seed": 1, "lr": 1e-3, "step": 1, "how": "raise"}])
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir, grid={"seeds": [0, 1],
                                                                       "overrides": {"train.lr": [1e-3, 1e30]}}))
    code = main(["run", str(path), "--no-compare"])
    out = capsys.readouterr().out
    assert code == 1
    assert "3 of 4 trials failed" in out and "NonFiniteLossError" in out and "RuntimeError" in out
    tracker = Tracker(store, "tiny")
    runs = {(r.data.tags["mtp_bench.seed"], r.data.params["train.lr"]): r for r in tracker.trial_runs()}
    assert len(runs) == 4
    assert runs[("0", "0.001")].info.status == FINISHED
    assert "last/test/gsm8k/exact_match" in runs[("0", "0.001")].data.metrics
    for key, expected in [(("0", "1e+30"), "NonFiniteLossError"), (("1", "1e+30"), "NonFiniteLossError"),
                          (("1", "0.001"), "injected failure at step 2")]:
        run = runs[key]
        assert run.info.status == FAILED and expected in run.data.tags[TAG_ERROR], (key, run.data.tags)
        traceback = tracker.client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))
        assert "Traceback" in Path(traceback).read_text()
    parent = tracker.client.get_run(runs[("0", "0.001")].data.tags["mlflow.parentRunId"])
    assert parent.info.status == FAILED


def test_retries_continue_from_the_checkpoint_and_lost_processes_are_recorded(tmp_path, gsm8k_dir, store):
    from mtp_bench.tracking import TAG_ERROR, Tracker

    # seed 0 raises once after its step-2 checkpoint; seed 1's process dies at step 2 of every attempt
    write_failure_plan(PLAN, [{"seed": 0, "step": 3, "how": "raise", "once": True}, {"seed": 1, "step": 1, "how": "exit"}])
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir, grid={"seeds": [0, 1]}))
    suite = load_suite(path, ["train.max_steps=5", "resources.max_retries=1"])
    result = run_suite(suite, expand_grid(suite), use_ray=True)
    retried, lost = result.reports
    assert (retried.status, retried.attempt) == (FINISHED, 2), retried.error
    assert (lost.status, lost.attempt) == (FAILED, 2) and "trial process lost" in lost.error
    tracker = Tracker(store, "tiny")
    assert len(tracker.trial_runs()) == 2  # one run counts for each trial, however many attempts it took
    history = tracker.client.get_metric_history(retried.run_id, "train/loss")
    steps = sorted(m.step for m in history)
    assert steps == [1, 2, 3, 4, 5]  # attempt 1 logged 1-3; attempt 2 resumed at the step-2 checkpoint and
    # did not log step 3 again
    run = tracker.client.get_run(lost.run_id)
    assert run.info.status == FAILED and "trial process lost" in run.data.tags[TAG_ERROR]
    # Its process died before the first checkpoint, so attempt 2 started again at step 0, in a new run: the lost
    # attempt's run is kept, closed and marked superseded, and no step is in either twice.
    both = tracker.client.search_runs([tracker.experiment_id], f"tags.`mtp_bench.trial_id` = '{lost.trial_id}'")
    (first,) = [r for r in both if r.info.run_id != lost.run_id]
    assert first.info.status == FAILED and first.data.tags["mtp_bench.kind"] == "superseded"
    assert first.data.tags["mtp_bench.superseded_by"] == lost.run_id
    for attempt in both:
        steps = [m.step for m in tracker.client.get_metric_history(attempt.info.run_id, "train/loss")]
        assert steps == [1], steps
