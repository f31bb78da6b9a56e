"""Faults that must not leave the store wrong: two first runs creating a fresh SQLite store at once, a Ray that does
not start (no traceback, no parent run left behind), and lock retries counted and recorded on the parent run."""

from __future__ import annotations

import multiprocessing

from conftest import tiny_suite, write_suite
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
    path = write_suite(tmp_path, tiny_suite(tmp_path, gsm8k_dir))
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
    suite = load_suite(write_suite(tmp_path, tiny_suite(tmp_path, gsm8k_dir)), ["train.max_steps=2"])
    result = run_suite(suite, expand_grid(suite), use_ray=False)
    assert [r.status for r in result.reports] == [FINISHED]
    expected = calls["locked"]
    assert expected > 0 and result.lock_retries == expected
    tags = tracking.Tracker(store, "tiny").run_tags(result.parent_run_id)
    assert tags[tracking.TAG_LOCK_RETRIES] == str(expected)
