"""A trial larger than one device: data-parallel training through Ray Train, tested with 2 gloo CPU workers.

Two workers with batch b and no accumulation see, step for step, the examples one process sees with batch b and
accumulation 2, so their logged losses must agree; rank 0 alone evaluates, checkpoints and records the run.
"""

from __future__ import annotations

import pytest

from conftest import tiny_suite, write_suite
from mtp_bench.scheduler import FINISHED, run_suite
from mtp_bench.suite import expand_grid, load_suite

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _history(tracker, run_id: str, name: str) -> list[float]:
    return [m.value for m in sorted(tracker.client.get_metric_history(run_id, name), key=lambda m: m.step)]


def test_two_gloo_ddp_workers_match_one_process_with_twice_the_accumulation(tmp_path, gsm8k_dir, store):
    from mtp_bench.tracking import Tracker

    path = write_suite(tmp_path, tiny_suite(tmp_path, gsm8k_dir))
    common = ["train.max_steps=4", "train.batch_size=4", "train.torch_threads=1"]
    single = load_suite(path, [*common, "train.grad_accum=2"])
    wide = load_suite(path, [*common, "train.grad_accum=1", "resources.num_workers=2", "resources.cpus_per_trial=1",
                             "resources.strategy=ddp"])
    reference = run_suite(single, expand_grid(single), use_ray=False).reports[0]
    result = run_suite(wide, expand_grid(wide), use_ray=True).reports[0]
    assert result.status == FINISHED, result.error
    tracker = Tracker(store, "tiny")
    assert len(tracker.trial_runs()) == 2  # one run per trial: the second worker recorded nothing
    expected, got = _history(tracker, reference.run_id, "train/loss"), _history(tracker, result.run_id, "train/loss")
    assert len(got) == 4 and got == pytest.approx(expected, abs=1e-5)
    assert _history(tracker, result.run_id, "train/tokens_seen") == _history(tracker, reference.run_id,
                                                                             "train/tokens_seen")
    run = tracker.client.get_run(result.run_id)
    assert "val/gsm8k/exact_match" in run.data.metrics and "last/test/gsm8k/exact_match" in run.data.metrics
    assert (tmp_path / "trials" / "tiny" / result.trial_id / "checkpoint" / "meta.json").is_file()
