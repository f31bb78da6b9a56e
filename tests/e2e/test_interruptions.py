"""Interruptions and faults in the middle of a run: whatever happens, every trial ends with exactly one record per
step, no run is left RUNNING by a fault (or the user is told which ones could not be closed, and ``--resume`` closes
them), and an interruption is KILLED with exit 130.

- Ctrl-C during a ``--no-ray`` trial: the trial and the parent KILLED, exit 130; ``--resume`` of a trial that never
  reached a checkpoint starts a clean run (the lost attempt's run is kept, marked superseded): one point per step.
- ``--resume`` while the first invocation still runs is refused (its parent's host, pid and pid start time; the lock
  beside a SQLite store); a parent whose pid the system gave to another process since is closed.
- A store whose disk fills up mid-run: one line, exit 1, no traceback; what could not be closed is named, and
  ``--resume`` closes it (simulated everywhere; on a real small tmpfs where the machine allows mounting one).
- Ctrl-C in ``compare`` says what compare did, not the training advice.
Ray: a trial whose worker died before its first checkpoint and SIGTERM during Ray's start are in
``test_failure_isolation.py`` and ``test_resume.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import make_suite, write_suite
from mtp_bench import cli
from mtp_bench.errors import EXIT_INTERRUPTED
from mtp_bench.tracking import tags as T

STEPS = ["train.max_steps=4", "train.log_every=1"]  # no checkpoint before the end: evaluation is at step 4


def _tracker(tmp_path: Path):
    from mtp_bench.tracking import Tracker

    return Tracker(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", "bad_input")


def _all_runs(tracker) -> list:
    """Every run of the experiment: parents, trials and superseded attempts."""
    return list(tracker.client.search_runs([tracker.experiment_id], max_results=1000))


def _one_point_per_step(tracker, run_id: str) -> dict[str, list[int]]:
    """Every metric of a run by its logged steps; asserts none is logged twice."""
    histories = {}
    for name in tracker.client.get_run(run_id).data.metrics:
        steps = sorted(m.step for m in tracker.client.get_metric_history(run_id, name))
        assert len(steps) == len(set(steps)), (name, steps)
        histories[name] = steps
    return histories


def _stop_at(monkeypatch: pytest.MonkeyPatch, step: int, action) -> None:
    """Make the trainer call ``action()`` when it reaches step index ``step`` (0-based)."""
    from mtp_bench.train.loop import Trainer

    original = Trainer.train_step

    def train_step(self, index):
        if index == step:
            action()
        return original(self, index)

    monkeypatch.setattr(Trainer, "train_step", train_step)


# ------------------------------------------------------------------------------------------------- Ctrl-C ----
@pytest.mark.slow
def test_ctrl_c_records_killed_and_resume_starts_a_clean_record(suite_file, tmp_path, monkeypatch, capsys) -> None:
    def interrupt():
        raise KeyboardInterrupt

    _stop_at(monkeypatch, 2, interrupt)  # after steps 1 and 2 are logged, before any checkpoint
    assert cli.main(["run", str(suite_file), *STEPS, "--no-ray", "--no-compare"]) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "interrupted; finished trials are recorded, `--resume` continues the rest" in err and "Traceback" not in err
    tracker = _tracker(tmp_path)
    (lost,) = tracker.trial_runs()
    assert lost.info.status == "KILLED"  # not FAILED: an interruption is not an error
    assert [r.info.status for r in tracker.invocation_runs("bad_input")] == ["KILLED"]
    assert _one_point_per_step(tracker, lost.info.run_id)["train/loss"] == [1, 2]

    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", str(suite_file), *STEPS, "--no-ray", "--no-compare", "--resume"]) == 0
    (trial,) = tracker.trial_runs()  # one run counts as the trial ...
    assert trial.info.status == "FINISHED" and trial.info.run_id != lost.info.run_id
    assert _one_point_per_step(tracker, trial.info.run_id)["train/loss"] == [1, 2, 3, 4]  # ... each step once
    assert trial.data.tags[T.TAG_SUPERSEDES] == lost.info.run_id
    old = tracker.client.get_run(lost.info.run_id)  # the lost attempt stays on record, out of the way
    assert old.info.status == "KILLED" and old.data.tags[T.TAG_KIND] == T.KIND_SUPERSEDED
    assert old.data.tags[T.TAG_SUPERSEDED_BY] == trial.info.run_id
    assert not [r for r in _all_runs(tracker) if r.info.status == "RUNNING"]


def test_ctrl_c_in_compare_says_what_compare_did(monkeypatch, capsys) -> None:
    import mtp_bench.cli.compare as compare

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "check_output", interrupted)
    assert cli.main(["compare", "--experiment", "x"]) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "compare interrupted; the store was only read" in err and "--resume" not in err


# ----------------------------------------------------------------------------------- a live invocation ----
def _parent(tracker, **tags: str) -> tuple[str, str]:
    run_id = tracker.start_run("parent", {T.TAG_KIND: T.KIND_INVOCATION, T.TAG_SUITE: "bad_input", **tags})
    child = tracker.start_run("child", {T.TAG_KIND: T.KIND_TRIAL, T.TAG_SUITE: "bad_input", T.TAG_INVOCATION: run_id},
                              run_id)
    return run_id, child


def test_live_reused_and_dead_pids_are_told_apart(tmp_path, monkeypatch) -> None:
    from mtp_bench.scheduler.invocation import (
        InvocationRunning,
        close_stale_invocations,
        driver_alive,
        process_started,
        refuse_live_invocations,
    )
    from mtp_bench.suite import load_suite

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        started = process_started(other.pid)
        here = socket.gethostname()
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        assert driver_alive({T.TAG_HOST: here, T.TAG_PID: str(other.pid), T.TAG_PID_STARTED: repr(started)}) is True
        assert driver_alive({T.TAG_HOST: here, T.TAG_PID: str(other.pid), T.TAG_PID_STARTED: repr(started - 3600)}) \
            is False  # the pid was given to another process since
        assert driver_alive({T.TAG_HOST: here, T.TAG_PID: str(dead.pid)}) is False
        assert driver_alive({T.TAG_HOST: "elsewhere", T.TAG_PID: str(other.pid)}) is None

        tracker = _tracker(tmp_path)
        suite_path = write_suite(tmp_path, make_suite(tmp_path, base="addition"))
        suite = load_suite(suite_path, [f"tracking.uri=sqlite:///{tmp_path / 'store' / 'mlflow.db'}"])
        reused, reused_child = _parent(tracker, **{T.TAG_HOST: here, T.TAG_PID: str(other.pid),
                                                   T.TAG_PID_STARTED: repr(started - 3600)})
        remote, _ = _parent(tracker, **{T.TAG_HOST: "elsewhere", T.TAG_PID: "1"})
        refuse_live_invocations(tracker, suite, lock_free=True)  # neither is known to be alive
        assert close_stale_invocations(tracker, suite, "resuming") == [reused]
        assert tracker.status(reused) == tracker.status(reused_child) == "KILLED"
        assert tracker.status(remote) == "RUNNING"  # cannot be checked from here: left alone

        live, _ = _parent(tracker, **{T.TAG_HOST: here, T.TAG_PID: str(other.pid), T.TAG_PID_STARTED: repr(started)})
        with pytest.raises(InvocationRunning, match=rf"still running .* \(pid {other.pid} on {here}, parent run {live}\)"):
            refuse_live_invocations(tracker, suite, lock_free=True)
        assert close_stale_invocations(tracker, suite, "resuming") == []
    finally:
        other.kill()
        other.wait()


def test_resume_is_refused_while_another_invocation_holds_the_store_lock(suite_file, tmp_path, capsys) -> None:
    from mtp_bench.tracking.retry import invocation_lock

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    with invocation_lock(uri, "bad_input/bad_input", exclusive=False):  # what a running invocation holds
        assert cli.main(["run", str(suite_file), "--no-ray", "--no-compare", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "suite 'bad_input' is still running into" in err and "holds its lock" in err and "Traceback" not in err
    assert _tracker(tmp_path).invocation_runs("bad_input") == []  # nothing was started
    assert not (tmp_path / "trials").exists()


# The first invocation: trains until step index 2, says so in a marker file, and waits there to be killed.
_SLEEPING_DRIVER = """
import sys, time
from pathlib import Path
from mtp_bench.train.loop import Trainer
original = Trainer.train_step
def train_step(self, index):
    if index == 2:
        Path(sys.argv[1]).touch()
        time.sleep(600)
    return original(self, index)
Trainer.train_step = train_step
from mtp_bench.cli import main
sys.exit(main(["run", sys.argv[2], "--no-ray", "--no-compare", *sys.argv[3:]]))
"""


@pytest.mark.slow
def test_resume_while_the_first_invocation_runs_is_refused_then_continues_it(suite_file, tmp_path, capsys) -> None:
    marker = tmp_path / "training"
    driver = subprocess.Popen([sys.executable, "-c", _SLEEPING_DRIVER, str(marker), str(suite_file), *STEPS],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), "the first invocation never reached its third step"
        tracker = _tracker(tmp_path)
        (running,) = tracker.trial_runs()
        before = _one_point_per_step(tracker, running.info.run_id)
        assert cli.main(["run", str(suite_file), *STEPS, "--no-ray", "--no-compare", "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"suite 'bad_input' is still running into sqlite:///{tmp_path / 'store' / 'mlflow.db'}" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert [r.info.status for r in tracker.invocation_runs("bad_input")] == ["RUNNING"]  # nothing taken over
        assert _one_point_per_step(tracker, running.info.run_id) == before
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(30)

    assert cli.main(["run", str(suite_file), *STEPS, "--no-ray", "--no-compare", "--resume"]) == 0
    assert sorted(r.info.status for r in tracker.invocation_runs("bad_input")) == ["FINISHED", "KILLED"]
    (trial,) = tracker.trial_runs()
    assert trial.info.status == "FINISHED" and _one_point_per_step(tracker, trial.info.run_id)["train/loss"] == [
        1, 2, 3, 4]
    assert not [r for r in _all_runs(tracker) if r.info.status == "RUNNING"]
