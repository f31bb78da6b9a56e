"""Grids on Ray: a local Ray sized to the machine, a two-node cluster, the up-front checks and the live view.

The checks and the view are plain functions (no Ray); the two grid tests start their own Ray and take ~1 min each
on 2 busy cores.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from helpers import make_suite, node, write_suite
from mtp_bench.scheduler import FINISHED, SchedulingError, TrialReport, run_suite
from mtp_bench.scheduler.live import GridView, eval_headline, live_subset
from mtp_bench.suite import expand_grid, load_suite


def _grid(tmp_path: Path, gsm8k_dir: Path, overrides: list[str] | None = None, **sections):
    suite = load_suite(write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir, **sections)), overrides or [])
    return suite, expand_grid(suite)


# ----------------------------------------------------------------------------------------- up-front checks ----
def test_a_gpu_on_a_cpu_only_cluster_fails_at_once_naming_trial_and_resource(tmp_path, gsm8k_dir, store):
    from mtp_bench.scheduler.checks import check_resources

    _, trials = _grid(tmp_path, gsm8k_dir, ["resources.gpus_per_trial=1", "train.device=cuda"])
    with pytest.raises(SchedulingError, match=r"trial 'ntp seed=0'.*1 GPU.*no node.*2 CPU, 0 GPU"):
        check_resources(trials, [node("10.0.0.1", 2)])
    _, cuda_without_gpu = _grid(tmp_path, gsm8k_dir, ["train.device=cuda"])
    with pytest.raises(SchedulingError, match="gpus_per_trial is 0"):
        check_resources(cuda_without_gpu, [node("10.0.0.1", 2, gpus=8)])
    _, too_wide = _grid(tmp_path, gsm8k_dir, ["resources.num_workers=4", "resources.cpus_per_trial=2"])
    with pytest.raises(SchedulingError, match="4 workers.*can hold 2"):
        check_resources(too_wide, [node("a", 3), node("b", 2)])
    check_resources(too_wide, [node("a", 4), node("b", 5)])  # 2 + 2 workers across two nodes: fine
    _, sharded = _grid(tmp_path, gsm8k_dir, ["resources.num_workers=2", "resources.strategy=fsdp"])
    check_resources(sharded, [node("a", 4)])  # FSDP is supported
    _, fp16 = _grid(tmp_path, gsm8k_dir, ["resources.num_workers=2", "resources.strategy=fsdp", "train.precision=fp16"])
    with pytest.raises(SchedulingError, match="strategy=fsdp with train.precision=fp16"):
        check_resources(fp16, [node("a", 4)])


def test_a_multi_machine_cluster_needs_a_tracking_server(tmp_path, gsm8k_dir, store):
    from mtp_bench.scheduler.checks import check_tracking, concurrency_cap

    _, trials = _grid(tmp_path, gsm8k_dir)
    check_tracking(trials, [node("10.0.0.1", 2), node("10.0.0.1", 2)])  # two Ray nodes, one machine: SQLite ok
    with pytest.raises(SchedulingError, match=r"spans 2 machines.*mlflow server"):
        check_tracking(trials, [node("10.0.0.1", 2), node("10.0.0.2", 2)])
    for trial in trials:
        trial.tracking.uri = "http://tracking:5000"
    check_tracking(trials, [node("10.0.0.1", 2), node("10.0.0.2", 2)])
    _, wide = _grid(tmp_path, gsm8k_dir, ["resources.num_workers=2", "grid.seeds=[0,1,2]"])
    assert concurrency_cap(wide, [node("a", 5)]) == 2  # 5 one-CPU workers hold two 2-worker trials at once


def test_the_live_view_shows_each_trial_state_and_current_metric():
    view = GridView([("a", "ntp seed=0"), ("b", "ntp seed=1"), ("c", "mutor seed=0")])
    view.start("a", node="node-one", attempt=1)
    view.update("a", live_subset({"train/loss": 2.5, "train/total_steps": 10, "train/lr": 1e-3}), step=4)
    view.update("a", live_subset({"val/gsm8k/exact_match": 0.25, "val/loss": 3.0}), step=5)
    view.finish(TrialReport("b", "ntp seed=1", "ntp", 1, "FAILED", error="NonFiniteLossError: non-finite loss"))
    assert view.counts()["RUNNING"] == 1 and view.counts()["FAILED"] == 1 and view.counts()["QUEUED"] == 1
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(view.render())
    text = console.export_text()
    assert "1 running" in text and "1 queued" in text and "1 failed" in text
    assert "5/10" in text and "2.5000" in text and "val/gsm8k/exact_match 0.25" in text
    assert "NonFiniteLossError" in text and "node-one"[:8] in text
    assert eval_headline({"val/loss": 3.0, "val/acc/ntp": 0.1}) == ("val/loss", 3.0)


# ------------------------------------------------------------------------------------------ tracking load ----
def _log_many(args: tuple[str, int, int]) -> str:
    uri, index, steps = args
    from mtp_bench.tracking import Tracker

    tracker = Tracker(uri, "concurrency")
    run_id = tracker.start_run(f"writer {index}", {"mtp_bench.kind": "trial"})
    for step in range(steps):
        tracker.log_metrics(run_id, {f"m{k}": float(step) for k in range(4)}, step)
    tracker.finish(run_id)
    return run_id


def test_parallel_writers_lose_no_metric_on_sqlite(tmp_path):
    from mtp_bench.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "concurrency")  # created once, as run_suite does before trials start
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        run_ids = pool.map(_log_many, [(uri, i, 60) for i in range(4)])
    for run_id in run_ids:
        for name in ("m0", "m3"):
            assert len(tracker.client.get_metric_history(run_id, name)) == 60


# ---------------------------------------------------------------------------------------------- real grids ----
@pytest.mark.ray
@pytest.mark.slow
def test_four_trials_run_in_parallel_on_a_local_ray_sized_to_the_machine(tmp_path, gsm8k_dir, store, monkeypatch):
    import ray

    from mtp_bench.scheduler import pool

    started, sizes = [], []
    start, limits = pool.WorkerPool._start, pool.worker_limits

    def counted_start(self, trial):
        started.append(trial.trial_id)
        return start(self, trial)

    def recorded_limits(*args):
        sizes.append(limits(*args))
        return sizes[-1]

    monkeypatch.setattr(pool.WorkerPool, "_start", counted_start)
    monkeypatch.setattr(pool, "worker_limits", recorded_limits)
    assert not ray.is_initialized()
    suite, trials = _grid(tmp_path, gsm8k_dir, ["grid.seeds=[0,1]", "train.max_steps=4"],
                          methods=[{"name": "ntp"}, {"name": "ntp", "label": "ntp_again"}])
    assert len(trials) == 4
    result = run_suite(suite, trials, use_ray=True)
    assert not ray.is_initialized()  # the Ray it started is stopped again
    assert [r.status for r in result.reports] == [FINISHED] * 4, [r.error for r in result.reports]
    from mtp_bench.tracking import Tracker

    tracker = Tracker(store, suite.name)
    runs = tracker.trial_runs()
    assert len(runs) == 4 and {r.data.tags["mlflow.parentRunId"] for r in runs} == {result.parent_run_id}
    for run in runs:  # every step's metrics made it into the store, and evaluation ran to the end
        assert len(tracker.client.get_metric_history(run.info.run_id, "train/loss")) == 4
        assert "last/test/gsm8k/exact_match" in run.data.metrics
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), "no two trials overlapped"
    # the pool started as many worker processes as the machine holds trials at once, and they ran the rest
    (limit,) = sizes[0][0].values()
    assert len(started) == min(limit, 4) and (limit >= 4 or len(started) < 4)


@pytest.mark.ray
@pytest.mark.slow
def test_trials_land_on_both_nodes_of_a_two_node_cluster(tmp_path, gsm8k_dir, store):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        suite, trials = _grid(tmp_path, gsm8k_dir, ["grid.seeds=[0,1]", "train.max_steps=2"])
        result = run_suite(suite, trials, use_ray=True, address=cluster.address)
        assert [r.status for r in result.reports] == [FINISHED] * 2, [r.error for r in result.reports]
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert {r.node for r in result.reports} == nodes and len(nodes) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()
