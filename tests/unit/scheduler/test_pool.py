"""The Ray grid's worker pool: a reused worker process gives a trial the same results as a fresh one, the pool's
size follows the resources and the concurrency cap (that a grid runs several trials in each worker is checked on
a real grid in tests/e2e/test_ray_grid.py).

A trial's results must not depend on what ran before it in the same process: the first test runs, in one worker, a
trial that changes the process (two torch threads, deterministic algorithms, another method and seed) and then an
NTP trial, and compares that NTP trial with the same trial run by a fresh worker (every logged value but wall-clock
times). The slow test does the same in two Ray actors: one that ran another trial first, one fresh.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import make_suite, node, write_suite
from mtp_bench.scheduler import FINISHED
from mtp_bench.scheduler.pool import DRIVER_MEMORY, shape_of, worker_limits, worker_resources
from mtp_bench.scheduler.trial_worker import TrialWorker
from mtp_bench.scheduler.worker import reset_process_state
from mtp_bench.suite import expand_grid, load_suite

_TIMED = ("seconds", "per_s")  # wall-clock values, which differ between any two runs


def _trials(tmp_path: Path, gsm8k_dir: Path, overrides: list[str], **sections):
    suite = load_suite(write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir, **sections)), overrides)
    return expand_grid(suite)


class _Mailbox:
    """What a worker posts to outside Ray: nothing is delivered."""

    post = SimpleNamespace(remote=lambda item: None)


def _history(store: str, experiment: str, run_id: str) -> dict[str, dict[int, float]]:
    """Every metric the run logged, by step, without wall-clock values."""
    from mtp_bench.tracking import Tracker

    tracker = Tracker(store, experiment)
    names = [n for n in tracker.metrics(run_id) if not any(t in n for t in _TIMED)]
    return {n: {m.step: m.value for m in tracker.client.get_metric_history(run_id, n)} for n in names}


# ------------------------------------------------------------------------------------------ no Ray needed ----
def test_a_trial_after_another_in_one_worker_equals_the_trial_in_a_fresh_worker(tmp_path, gsm8k_dir, store):
    threads = torch.get_num_threads()
    changer = _trials(tmp_path, gsm8k_dir, ["train.torch_threads=2", "train.deterministic=true", "grid.seeds=[7]"],
                      methods=[{"name": "mutor"}], baseline="mutor")[0]
    ntp = _trials(tmp_path, gsm8k_dir, ["resources.cpus_per_trial=1"])[0]
    assert changer.train.deterministic and changer.method.name == "mutor" and ntp.seed != changer.seed
    try:
        reused = TrialWorker(os.getcwd(), changer.model_dump(mode="json"))
        first = reused.run(changer.model_dump(mode="json"), changer.trial_id, parent_id=None, resume=False,
                           mailbox=_Mailbox())
        assert first["status"] == FINISHED, first["error"]
        assert torch.are_deterministic_algorithms_enabled()  # what the changer left behind...
        after = reused.run(ntp.model_dump(mode="json"), ntp.trial_id, parent_id=None, resume=False,
                           mailbox=_Mailbox())
        assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1  # ...was reset
        alone = TrialWorker(os.getcwd()).run(ntp.model_dump(mode="json"), ntp.trial_id, parent_id=None,
                                             resume=False, mailbox=_Mailbox())
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
    assert after["status"] == alone["status"] == FINISHED, (after["error"], alone["error"])
    assert after["run_id"] != alone["run_id"]
    reused_history = _history(store, "tiny", after["run_id"])
    assert reused_history == _history(store, "tiny", alone["run_id"])
    assert len(reused_history["train/loss"]) == ntp.train.max_steps and "last/test/gsm8k/exact_match" in reused_history
    assert reused.trackers and len(reused.trackers) == 1  # the store was opened once for both trials


def test_process_state_is_set_from_the_trial_alone(tmp_path, gsm8k_dir):
    threads = torch.get_num_threads()
    try:
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(2)
        trial = _trials(tmp_path, gsm8k_dir, ["resources.cpus_per_trial=1"])[0]
        reset_process_state(trial)
        assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
        reset_process_state(_trials(tmp_path, gsm8k_dir, ["train.torch_threads=2"])[0])
        assert torch.get_num_threads() == 2
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)


def test_pool_size_follows_resources_and_the_concurrency_cap(tmp_path, gsm8k_dir):
    trials = _trials(tmp_path, gsm8k_dir, ["grid.seeds=[0,1,2,3,4]"])
    limits, cap = worker_limits(trials, [node("a", 2), node("b", 1)])
    assert limits == {shape_of(trials[0]): 3} and cap is None  # 3 one-CPU workers fit on the two nodes
    capped = _trials(tmp_path, gsm8k_dir, ["grid.seeds=[0,1,2,3,4]", "resources.max_concurrent_trials=2"])
    assert worker_limits(capped, [node("a", 8)]) == ({shape_of(capped[0]): 2}, 2)
    two = _trials(tmp_path, gsm8k_dir, ["grid.seeds=[0,1]"])
    assert worker_limits(two, [node("a", 8)])[0] == {shape_of(two[0]): 2}  # never more workers than trials
    gpu = _trials(tmp_path, gsm8k_dir, ["resources.gpus_per_trial=0.5", "resources.cpus_per_trial=2"])[0]
    assert worker_resources(gpu) == {"num_cpus": 2, "num_gpus": 0.5}
    wide = _trials(tmp_path, gsm8k_dir, ["resources.num_workers=2", "grid.seeds=[0,1,2]"])
    assert worker_resources(wide[0]) == {"num_cpus": 0, "memory": DRIVER_MEMORY}  # Ray Train's workers reserve
    assert worker_limits(wide, [node("a", 5)]) == ({shape_of(wide[0]): 2}, 2)  # 5 CPUs: two 2-worker trials


# ------------------------------------------------------------------------------------------------ on Ray ----
@pytest.mark.ray
@pytest.mark.slow
def test_reused_and_fresh_ray_workers_give_the_same_results(tmp_path, gsm8k_dir, store):
    """(That a grid runs several trials in each of its pool's workers is checked by test_ray_grid.py's grid.)"""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        changer = _trials(tmp_path, gsm8k_dir, ["train.torch_threads=2", "grid.seeds=[7]"], methods=[{"name": "mutor"}], baseline="mutor")[0]
        ntp = _trials(tmp_path, gsm8k_dir, [])[0]
        actor = ray.remote(TrialWorker).options(num_cpus=1)
        reused, fresh = actor.remote(os.getcwd()), actor.remote(os.getcwd())
        mailbox = SimpleNamespace(post=SimpleNamespace(remote=lambda item: None))  # nothing to deliver
        kwargs = {"parent_id": None, "resume": False, "mailbox": mailbox}
        first = ray.get(reused.run.remote(changer.model_dump(mode="json"), changer.trial_id, **kwargs))
        after = ray.get(reused.run.remote(ntp.model_dump(mode="json"), ntp.trial_id, **kwargs))
        alone = ray.get(fresh.run.remote(ntp.model_dump(mode="json"), ntp.trial_id, **kwargs))
        assert [first["status"], after["status"], alone["status"]] == [FINISHED] * 3
        assert _history(store, "tiny", after["run_id"]) == _history(store, "tiny", alone["run_id"])
    finally:
        ray.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_ctrl_c_during_a_ray_grid_marks_running_trials_and_the_invocation_killed(tmp_path, gsm8k_dir, store,
                                                                                  monkeypatch):
    from mtp_bench import tracking
    from mtp_bench.scheduler import live, run_suite

    def interrupt(self, trial_id, *args, **kwargs):  # the user presses Ctrl-C once a trial has opened its run
        raise KeyboardInterrupt

    monkeypatch.setattr(live.GridView, "start", interrupt)
    suite = load_suite(write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir, grid={"seeds": [0, 1]})),
                       ["train.max_steps=50"])
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, expand_grid(suite), use_ray=True)
    tracker = tracking.Tracker(store, suite.name)
    runs = tracker.trial_runs()
    assert runs and all(r.info.status == tracking.KILLED for r in runs)  # --resume continues them
    assert [r.info.status for r in tracker.invocation_runs(suite.name)] == [tracking.KILLED]
