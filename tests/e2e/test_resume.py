"""Resume: a grid interrupted mid-trial and continued with ``--resume`` on Ray ends with the metrics of an
uninterrupted grid, one MLflow run per trial, the finished trial skipped and the interrupted one continued from its
checkpoint. A driver killed with SIGKILL leaves a store that ``--resume`` completes: every run ends with a final
status, every trial has one run, no metric step is logged twice. Also: the trial id is stable across the JSON round
trip that carries a trial to a worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_suite, write_suite
from mtp_bench.scheduler import FINISHED, SKIPPED, run_suite
from mtp_bench.suite import expand_grid, load_suite
from mtp_bench.suite.config import TrialConfig

# Final metrics that do not depend on wall-clock time.
_TIMELESS = ("last/", "best/", "train/tokens_seen_total", "train/flops_total")


def _suite(tmp_path: Path, gsm8k_dir: Path, store_dir: Path):
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir, grid={"seeds": [0, 1]}), f"{store_dir.name}.yaml")
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
    moved.train.progress = not moved.train.progress
    assert moved.trial_id == trials[0].trial_id  # nor is whether a progress bar is drawn
    moved.train.lr *= 2
    assert moved.trial_id != trials[0].trial_id


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
    assert steps == [1, 2, 3, 4, 5, 6]  # 1-3 before Ctrl-C, then from the step-2 checkpoint on: step 3 logged once

    expected = {r.trial_id: r.metrics for r in reference.reports}
    for trial in trials:
        got = dict(tracker.trial_runs(trial.trial_id)[0].data.metrics)
        timeless = {k: v for k, v in expected[trial.trial_id].items() if k.startswith(_TIMELESS)}
        assert timeless and {k: got[k] for k in timeless} == pytest.approx(timeless, rel=1e-6, abs=1e-9)


# The killed driver: `mtp-bench run` in a process whose seed-1 trial stops at its fourth step (after its step-2
# checkpoint and three logged losses), says so in a marker file, and waits to be killed.
_KILLED_DRIVER = """
import sys, time
from pathlib import Path
from mtp_bench.train.loop import Trainer
original = Trainer.train_step
def train_step(self, step):
    if self.seed == 1 and step == 3:
        Path(sys.argv[1]).touch()
        time.sleep(600)
    return original(self, step)
Trainer.train_step = train_step
from mtp_bench.cli import main
sys.exit(main(["run", sys.argv[2], "--no-ray", "--no-compare", *sys.argv[3:]]))
"""


@pytest.mark.slow
def test_a_driver_killed_with_sigkill_is_closed_out_and_resumed(tmp_path, gsm8k_dir, monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    import time

    from mtp_bench import tracking
    from mtp_bench.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store_dir = tmp_path / "killed"
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir, grid={"seeds": [0, 1]}), "killed.yaml")
    overrides = [f"tracking.uri=sqlite:///{store_dir / 'mlflow.db'}", f"tracking.workdir={store_dir / 'trials'}",
                 "train.max_steps=6", "train.torch_threads=1"]
    marker = tmp_path / "stopped"
    driver = subprocess.Popen([sys.executable, "-c", _KILLED_DRIVER, str(marker), str(path), *overrides],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not marker.exists() and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the driver never reached seed 1's fourth step"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(30)

    assert main(["run", str(path), "--no-ray", "--no-compare", "--resume", *overrides]) == 0
    tracker = tracking.Tracker(f"sqlite:///{store_dir / 'mlflow.db'}", "tiny")
    parents = tracker.invocation_runs("tiny")
    assert sorted(r.info.status for r in parents) == [tracking.FINISHED, tracking.KILLED]
    killed, resumed = sorted(parents, key=lambda r: r.info.status == tracking.FINISHED)
    assert killed.data.tags[tracking.TAG_CLOSED_BY] == resumed.info.run_id
    runs = tracker.trial_runs()
    assert len(runs) == 2 and len({r.data.tags[tracking.TAG_TRIAL_ID] for r in runs}) == 2  # one run per trial
    assert all(r.info.status == tracking.FINISHED for r in runs)
    continued = next(r for r in runs if r.data.tags[tracking.TAG_SEED] == "1")
    assert continued.data.tags[tracking.TAG_PARENT] == resumed.info.run_id  # the new invocation shows it
    assert continued.data.tags[tracking.TAG_PREVIOUS_PARENTS] == killed.info.run_id
    for run in runs:
        for name in run.data.metrics:
            steps = [m.step for m in tracker.client.get_metric_history(run.info.run_id, name)]
            assert len(steps) == len(set(steps)), (name, sorted(steps))  # no step logged twice
    losses = tracker.client.get_metric_history(continued.info.run_id, "train/loss")
    assert sorted(m.step for m in losses) == [1, 2, 3, 4, 5, 6]


@pytest.mark.ray
@pytest.mark.slow
def test_sigterm_stops_a_ray_grid_like_ctrl_c(tmp_path, gsm8k_dir, monkeypatch):
    """A batch scheduler stops jobs with SIGTERM (ray.init installs a bare-exit handler for it): the driver exits
    130 as after Ctrl-C, with the parent and the running trial's run recorded KILLED, not left RUNNING."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from mtp_bench import tracking
    from mtp_bench.errors import EXIT_INTERRUPTED

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store_dir = tmp_path / "stopped"
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir), "stopped.yaml")
    uri = f"sqlite:///{store_dir / 'mlflow.db'}"
    driver = subprocess.Popen([sys.executable, "-m", "mtp_bench.cli", "run", str(path), "--no-compare",
                               f"tracking.uri={uri}", f"tracking.workdir={store_dir / 'trials'}",
                               "train.max_steps=100000", "evaluation.every_steps=100000", "train.torch_threads=1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, running, tracker = time.monotonic() + 240, [], None
    while not running and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(1)
        if tracker is None and (store_dir / "mlflow.db").exists():
            tracker = tracking.Tracker(uri, "tiny")
        if tracker is not None:
            running = [r for r in tracker.trial_runs() if r.info.status == "RUNNING" and "train/loss" in r.data.metrics]
    assert running, f"no trial got to training: {driver.stdout.read() if driver.poll() is not None else ''}"
    os.kill(driver.pid, signal.SIGTERM)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == EXIT_INTERRUPTED, output
    assert [r.info.status for r in tracker.invocation_runs("tiny")] == [tracking.KILLED]
    assert [r.info.status for r in tracker.trial_runs()] == [tracking.KILLED]


@pytest.mark.ray
@pytest.mark.slow
def test_sigterm_while_ray_starts_is_an_interruption(tmp_path, gsm8k_dir, monkeypatch):
    """SIGTERM while ``ray.init`` is still starting the local Ray (its processes spawned, the driver not connected
    yet): Ray's own handler would exit 15 silently; the driver says it was interrupted, exits 130, leaves no run
    RUNNING and stops what Ray had started."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from mtp_bench.errors import EXIT_INTERRUPTED

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store_dir = tmp_path / "starting"
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir), "starting.yaml")
    driver = subprocess.Popen([sys.executable, "-m", "mtp_bench.cli", "run", str(path), "--no-compare",
                               f"tracking.uri=sqlite:///{store_dir / 'mlflow.db'}",
                               f"tracking.workdir={store_dir / 'trials'}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, ray_processes = time.monotonic() + 240, []
    while not ray_processes and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        with contextlib.suppress(psutil.Error):
            ray_processes = [p for p in psutil.Process(driver.pid).children(recursive=True)
                             if "gcs_server" in p.name() or "raylet" in p.name()]
    assert ray_processes, "Ray never started"
    os.kill(driver.pid, signal.SIGTERM)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == EXIT_INTERRUPTED, output
    assert "mtp-bench: interrupted" in output and "Traceback" not in output, output
    if (store_dir / "mlflow.db").exists():
        from mtp_bench import tracking

        tracker = tracking.Tracker(f"sqlite:///{store_dir / 'mlflow.db'}", "tiny")
        assert not [r for r in tracker.client.search_runs([tracker.experiment_id]) if r.info.status == "RUNNING"]
    gone, alive = psutil.wait_procs(ray_processes, timeout=30)
    assert not alive, f"Ray processes left running: {alive}"
