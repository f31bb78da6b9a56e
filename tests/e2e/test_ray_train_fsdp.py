"""FSDP through Ray Train with 2 gloo CPU workers: a sharded trial crashes on both ranks, is retried from its
checkpoint and must end exactly where one process with twice the accumulation ends, with rank 0's evaluation and
export of the whole weights (the reasoning is in test_ray_train.py). Failures are injected as in
test_failure_isolation.py: a Ray ``worker_process_setup_hook`` wraps ``Trainer.train_step`` in every worker, driven by
a plan file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import (
    local_ray_with_failure_plan,
    make_suite,
    metric_history,
    metric_values,
    write_failure_plan,
    write_suite,
)
from mtp_bench.scheduler import FINISHED, run_suite
from mtp_bench.suite import expand_grid, load_suite

pytestmark = [pytest.mark.ray, pytest.mark.slow]
PLAN = Path(f"/tmp/mtp-bench-ray-train-plan-{os.getpid()}.json")
COMMON = ["train.max_steps=4", "train.batch_size=4", "train.torch_threads=1"]
WIDE = ["train.grad_accum=1", "resources.num_workers=2", "resources.cpus_per_trial=1"]


@pytest.fixture(scope="module", autouse=True)
def ray_with_injection(tmp_path_factory):
    with local_ray_with_failure_plan(tmp_path_factory.getbasetemp(), PLAN):
        yield


def test_a_two_gloo_worker_fsdp_trial_matches_one_process_resumes_and_exports_the_whole_model(tmp_path, gsm8k_dir,
                                                                                             store):
    """Through Ray Train: the trial crashes on both ranks in step 4 and is retried from its step-2 checkpoint (written
    from gathered shards, loaded back into shards); it must end exactly where the uninterrupted single process ends,
    with rank 0's evaluation and export of the whole weights."""
    import torch
    from transformers import AutoModelForCausalLM

    from mtp_bench.tracking import Tracker

    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir))
    single = load_suite(path, [*COMMON, "train.grad_accum=2"])
    wide = load_suite(path, [*COMMON, *WIDE, "resources.strategy=fsdp", "resources.max_retries=1"])
    reference = run_suite(single, expand_grid(single), use_ray=False).reports[0]
    write_failure_plan(PLAN, [{"method": "ntp", "step": 3, "once": True, "per_rank": True}])
    result = run_suite(wide, expand_grid(wide), use_ray=True).reports[0]
    assert (result.status, result.attempt) == (FINISHED, 2), result.error
    tracker = Tracker(store, "tiny")
    assert len(tracker.trial_runs()) == 2  # one run per trial: no second worker's, no retry's
    for name in ("train/loss", "train/grad_norm"):  # equal gradient norms: FSDP's averaging is compensated
        expected, got = metric_history(tracker, reference.run_id, name), metric_history(tracker, result.run_id, name)
        assert [step for step, _ in got] == [1, 2, 3, 4]  # steps 1-3, the crash, 3-4 again from step 2: 3 logged once
        assert metric_values(got) == pytest.approx(metric_values(expected), abs=1e-5), name
    # rank 0 evaluated (periodically and at the end) with the whole weights: the single process's scores
    final = tracker.client.get_run(result.run_id).data.metrics
    scored = {k: v for k, v in reference.metrics.items() if k.startswith(("val/", "last/", "best/"))}
    assert scored and {k: final[k] for k in scored} == pytest.approx(scored, abs=1e-5)
    assert [step for step, _ in metric_history(tracker, result.run_id, "val/gsm8k/exact_match")] == [2, 4]
    trials = tmp_path / "trials" / "tiny"
    assert json.loads((trials / result.trial_id / "checkpoint" / "meta.json").read_text())["step"] == 4
    # the export is the whole trained model, loadable on its own and equal to the single process's
    weights = AutoModelForCausalLM.from_pretrained(trials / result.trial_id / "export").state_dict()
    expected = AutoModelForCausalLM.from_pretrained(trials / reference.trial_id / "export").state_dict()
    assert weights.keys() == expected.keys()
    assert all(torch.allclose(weights[k], expected[k], atol=1e-5) for k in weights)
