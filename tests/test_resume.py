"""Resume: a grid interrupted mid-trial and continued with ``--resume`` on Ray ends with the metrics of an
uninterrupted grid, one MLflow run per trial, the finished trial skipped and the interrupted one continued from its
checkpoint. Also: the trial id is stable across the JSON round trip that carries a trial to a worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import tiny_suite, write_suite
from mtp_bench.scheduler import FINISHED, SKIPPED, run_suite
from mtp_bench.suite import expand_grid, load_suite
from mtp_bench.suite.models import TrialConfig

# Final metrics that do not depend on wall-clock time.
_TIMELESS = ("last/", "best/", "train/tokens_seen_total", "train/flops_total")


def _suite(tmp_path: Path, gsm8k_dir: Path, store_dir: Path):
    path = write_suite(tmp_path, tiny_suite(tmp_path, gsm8k_dir, grid={"seeds": [0, 1]}), f"{store_dir.name}.yaml")
    overrides = [f"tracking.uri=sqlite:///{store_dir / 'mlflow.db'}", f"tracking.workdir={store_dir / 'trials'}",
                 "train.max_steps=6", "train.torch_threads=1"]
    suite = load_suite(path, overrides)
    return suite, expand_grid(suite)


def test_trial_ids_survive_the_trip_to_a_worker(tmp_path, gsm8k_dir, store):
    _, trials = _suite(tmp_path, gsm8k_dir, tmp_path / "ids")
    for trial in trials:
        assert TrialConfig.model_validate(trial.model_dump(mode="json")).trial_id == trial.trial_id
    moved = trials[0].model_copy(deep=True)
    moved.tracking.uri, moved.resources.max_concurrent_trials = "http://elsewhere:5000", 3
    assert moved.trial_id == trials[0].trial_id  # where it is recorded and how it is scheduled are not its identity


@pytest.mark.ray
@pytest.mark.slow
def test_an_interrupted_grid_resumed_on_ray_matches_an_uninterrupted_one(tmp_path, gsm8k_dir, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from mtp_bench.tracking import Tracker
    from mtp_bench.train.loop import Trainer

    reference_suite, reference_trials = _suite(tmp_path, gsm8k_dir, tmp_path / "reference")
    reference = run_suite(reference_suite, reference_trials, use_ray=False)
    assert [r.status for r in reference.reports] == [FINISHED, FINISHED]

    # The user presses Ctrl-C during seed 1's fourth step (its last checkpoint is the one after step 2).
    suite, trials = _suite(tmp_path, gsm8k_dir, tmp_path / "interrupted")
    original = Trainer.train_step

    def interrupted(self, step):
        if self.seed == 1 and step == 3:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, trials, use_ray=False)
    monkeypatch.setattr(Trainer, "train_step", original)

    resumed = run_suite(suite, trials, use_ray=True, resume=True)
    assert [r.status for r in resumed.reports] == [SKIPPED, FINISHED], [r.error for r in resumed.reports]
    tracker = Tracker(suite.tracking.uri, suite.name)
    runs = tracker.trial_runs()
    assert sorted(r.data.tags["mtp_bench.trial_id"] for r in runs) == sorted(t.trial_id for t in trials)
    assert all(r.info.status == FINISHED for r in runs)
    continued = tracker.client.get_run(resumed.reports[1].run_id)
    assert continued.data.tags["mtp_bench.invocation"] == resumed.parent_run_id  # reopened by the resuming grid
    steps = sorted(m.step for m in tracker.client.get_metric_history(continued.info.run_id, "train/loss"))
    assert steps == [1, 2, 3, 3, 4, 5, 6]  # steps 1-3 before Ctrl-C, then from the step-2 checkpoint on

    expected = {r.trial_id: r.metrics for r in reference.reports}
    for trial in trials:
        got = dict(tracker.trial_runs(trial.trial_id)[0].data.metrics)
        timeless = {k: v for k, v in expected[trial.trial_id].items() if k.startswith(_TIMELESS)}
        assert timeless and {k: got[k] for k in timeless} == pytest.approx(timeless, rel=1e-6, abs=1e-9)
