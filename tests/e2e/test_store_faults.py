"""Faults that must not leave the store wrong: two first runs creating a fresh SQLite store at once, a Ray that does
not start (no traceback, no parent run left behind), lock retries counted and recorded on the parent run, and a disk
that fills up mid-run (one line naming what could not be closed; ``--resume`` closes it, one point per step).
Stores that cannot be used at all: ``test_unusable_stores.py``."""

from __future__ import annotations

import multiprocessing

import pytest

from helpers import make_suite, write_own_store_suite, write_suite
from mtp_bench.suite import expand_grid, load_suite


def _open_and_record(uri: str, barrier, results) -> None:
    from mtp_bench.tracking import Tracker

    barrier.wait()  # every process opens the fresh store in the same instant
    try:
        tracker = Tracker(uri, "race")
        tracker.finish(tracker.start_run("r", {}))
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


def test_parallel_first_runs_create_a_fresh_store_once(tmp_path):
    import mtp_bench.tracking.runs  # noqa: F401 - mlflow imported before the fork: the processes start together

    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(4), context.Queue()
    processes = [context.Process(target=_open_and_record, args=(uri, barrier, results)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    outcomes = [results.get(timeout=5) for _ in processes]
    assert outcomes == ["ok"] * 4, outcomes
    from mtp_bench.tracking import Tracker

    tracker = Tracker(uri, "race")
    assert len(tracker.client.search_runs([tracker.experiment_id])) == 4
    assert len(tracker.client.search_experiments()) == 2  # "Default" and "race": created once


def test_a_ray_that_does_not_start_is_one_clear_error_and_leaves_no_run(tmp_path, gsm8k_dir, store, monkeypatch,
                                                                         capsys):
    import ray

    from mtp_bench.cli import main

    def slow_start(*args, **kwargs):  # what Ray raises when a local node misses its start-up deadline
        raise Exception("The current node timed out during startup. This could happen because some of the Ray "
                        "processes failed to startup.")

    monkeypatch.setattr(ray, "init", slow_start)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir))
    assert main(["run", str(path), "--no-compare"]) == 1
    err = capsys.readouterr().err
    assert "could not start or join a local Ray" in err and "timed out during startup" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 5
    from mtp_bench.tracking import Tracker

    tracker = Tracker(store, "tiny")
    assert tracker.client.search_runs([tracker.experiment_id]) == []  # no parent run for a grid that never started


def test_lock_retries_are_counted_and_recorded_on_the_parent_run(tmp_path, gsm8k_dir, store, monkeypatch):
    from mlflow import MlflowClient

    from mtp_bench import tracking
    from mtp_bench.scheduler import FINISHED, run_suite

    original, calls = MlflowClient.log_batch, {"n": 0, "locked": 0}

    def locked_now_and_then(self, *args, **kwargs):
        if kwargs.get("metrics"):
            calls["n"] += 1
            if calls["n"] % 3 == 0:  # every third metrics write finds the database locked once
                calls["locked"] += 1
                raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", locked_now_and_then)
    monkeypatch.setattr(tracking.retry.random, "random", lambda: 0.0)  # shortest backoff
    suite = load_suite(write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir)), ["train.max_steps=2"])
    result = run_suite(suite, expand_grid(suite), use_ray=False)
    assert [r.status for r in result.reports] == [FINISHED]
    expected = calls["locked"]
    assert expected > 0 and result.lock_retries == expected
    tags = tracking.Tracker(store, "tiny").client.get_run(result.parent_run_id).data.tags
    assert tags[tracking.TAG_LOCK_RETRIES] == str(expected)


# ------------------------------------------------------------------------ a disk that fills up mid-run ----
def _base_suite_file(tmp_path, monkeypatch, store_dir):
    tracking = {"uri": f"sqlite:///{store_dir / 'mlflow.db'}", "workdir": str(tmp_path / "trials")}
    return write_own_store_suite(tmp_path, monkeypatch, tracking=tracking)


def _fill_at_step(monkeypatch, index, fill) -> None:
    """``fill()`` once, when the first trial reaches step ``index`` (0-based)."""
    from mtp_bench.train.loop import Trainer

    original, done = Trainer.train_step, []

    def train_step(self, step):
        if step == index and not done:
            done.append(step)
            fill()
        return original(self, step)

    monkeypatch.setattr(Trainer, "train_step", train_step)


def _resume_closes_everything(path, store_dir) -> None:
    from mtp_bench.cli import main
    from mtp_bench.tracking import Tracker

    assert main(["run", str(path), *_STEPS, "--no-ray", "--no-compare", "--resume"]) == 0
    tracker = Tracker(f"sqlite:///{store_dir / 'mlflow.db'}", "bad_input")
    every = tracker.client.search_runs([tracker.experiment_id], max_results=1000)
    assert not [r for r in every if r.info.status == "RUNNING"]
    (trial,) = tracker.trial_runs()
    assert trial.info.status == "FINISHED"
    steps = sorted(m.step for m in tracker.client.get_metric_history(trial.info.run_id, "train/loss"))
    assert steps == [1, 2, 3, 4]  # one point per step, whatever the full disk cut short


_STEPS = ["train.max_steps=4", "train.log_every=1"]


@pytest.mark.slow
def test_a_store_whose_disk_fills_up_says_what_it_left_open_and_resume_closes_it(tmp_path, monkeypatch, capsys):
    """Simulated (runs anywhere): from the third step on, every write to the store fails as SQLite and the file
    system do on a full disk; nothing can be closed, and the one line says so."""
    import errno

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from mtp_bench.cli import main
    from mtp_bench.tracking import Tracker

    store_dir = tmp_path / "store"
    path = _base_suite_file(tmp_path, monkeypatch, store_dir)
    full = {"on": False}

    def failing(name: str, error: Exception):
        original = getattr(MlflowClient, name)

        def method(self, *args, **kwargs):
            if full["on"]:
                raise error
            return original(self, *args, **kwargs)

        return method

    database = MlflowException("(sqlite3.OperationalError) database or disk is full")
    for name in ("log_batch", "set_terminated", "update_run", "create_run", "set_tag", "log_metric", "log_param"):
        monkeypatch.setattr(MlflowClient, name, failing(name, database))
    for name in ("log_text", "log_dict", "log_artifact"):
        monkeypatch.setattr(MlflowClient, name, failing(name, OSError(errno.ENOSPC, "No space left on device")))
    _fill_at_step(monkeypatch, 2, lambda: full.update(on=True))
    assert main(["run", str(path), *_STEPS, "--no-ray", "--no-compare"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"the store sqlite:///{store_dir / 'mlflow.db'} failed mid-run: the disk is full" in err
    assert "the parent run" in err and "1 trial run(s) could not be closed and stay RUNNING" in err
    assert "`--resume` closes them" in err
    tracker = Tracker(f"sqlite:///{store_dir / 'mlflow.db'}", "bad_input")
    assert [r.info.status for r in tracker.trial_runs()] == ["RUNNING"]  # as the message says

    full["on"] = False  # space freed
    _resume_closes_everything(path, store_dir)


@pytest.mark.slow
def test_a_real_small_filesystem_that_fills_up_mid_run(tmp_path, monkeypatch, capsys):
    """A 24 MB tmpfs holds the store; at the third step a file fills it. Needs mounting rights (root in a VM or a
    privileged container): skipped elsewhere, where the simulated test above stands in."""
    import shutil
    import subprocess

    from mtp_bench.cli import main
    from mtp_bench.tracking import Tracker

    store_dir = tmp_path / "small"
    store_dir.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs",
                                                         str(store_dir)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the simulated full disk covers the contract")
    try:
        path = _base_suite_file(tmp_path, monkeypatch, store_dir)

        def fill() -> None:
            with (store_dir / "filler").open("wb") as handle:
                try:
                    while True:
                        handle.write(b"\0" * 1024 * 1024)
                        handle.flush()
                except OSError:
                    pass

        _fill_at_step(monkeypatch, 2, fill)
        code = main(["run", str(path), *_STEPS, "--no-ray", "--no-compare"])
        captured = capsys.readouterr()
        assert code == 1 and "Traceback" not in captured.err and len(captured.err.strip().splitlines()) <= 5, \
            captured.err
        tracker = Tracker(f"sqlite:///{store_dir / 'mlflow.db'}", "bad_input")
        left = [r for r in tracker.client.search_runs([tracker.experiment_id]) if r.info.status == "RUNNING"]
        assert not left or "could not be closed and stay RUNNING" in captured.err, captured.err
        (store_dir / "filler").unlink()
        monkeypatch.undo()
        monkeypatch.chdir(tmp_path)
        _resume_closes_everything(path, store_dir)
    finally:
        subprocess.run(["umount", "-l", str(store_dir)], check=False)
