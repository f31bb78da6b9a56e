"""A trial larger than one device: data-parallel training through Ray Train, tested with 2 gloo CPU workers.

Two workers with batch b and no accumulation see, step for step, the examples one process sees with batch b and
accumulation 2 (and the same method randomness), so their logged losses and gradient norms must agree; rank 0 alone
evaluates, checkpoints and records the run. Here: DDP through Ray Train (on the Ray the scheduler starts), and the
methods with their own modules under FSDP on directly spawned ranks. FSDP through Ray Train, with a crash and a
resume, is in test_ray_train_fsdp.py: a module of its own, so the two long Ray Train runs go to different test
processes under ``-n 2``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import make_suite, metric_history, metric_values, write_suite
from mtp_bench.scheduler import FINISHED, run_suite
from mtp_bench.suite import expand_grid, load_suite

pytestmark = [pytest.mark.ray, pytest.mark.slow]
COMMON = ["train.max_steps=4", "train.batch_size=4", "train.torch_threads=1"]
WIDE = ["train.grad_accum=1", "resources.num_workers=2", "resources.cpus_per_trial=1"]


def test_two_gloo_ddp_workers_match_one_process_with_twice_the_accumulation(tmp_path, gsm8k_dir, store):
    from mtp_bench.tracking import Tracker

    path = write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir))
    single = load_suite(path, [*COMMON, "train.grad_accum=2"])
    wide = load_suite(path, [*COMMON, *WIDE, "resources.strategy=ddp"])
    reference = run_suite(single, expand_grid(single), use_ray=False).reports[0]
    result = run_suite(wide, expand_grid(wide), use_ray=True).reports[0]
    assert result.status == FINISHED, result.error
    tracker = Tracker(store, "tiny")
    assert len(tracker.trial_runs()) == 2  # one run per trial: the second worker recorded nothing

    def history(report, name: str) -> list[tuple[int, float]]:
        return metric_history(tracker, report.run_id, name)

    expected, got = history(reference, "train/loss"), history(result, "train/loss")
    assert len(got) == 4 and metric_values(got) == pytest.approx(metric_values(expected), abs=1e-5)
    assert history(result, "train/tokens_seen") == history(reference, "train/tokens_seen")
    run = tracker.client.get_run(result.run_id)
    assert "val/gsm8k/exact_match" in run.data.metrics and "last/test/gsm8k/exact_match" in run.data.metrics
    assert (tmp_path / "trials" / "tiny" / result.trial_id / "checkpoint" / "meta.json").is_file()


def _fsdp_rank(rank: int, world: int, init: str, trials: list[dict], workdir: str, out: str) -> None:
    """One rank of FSDP trials on gloo, run directly (what a Ray Train worker runs, minus Ray's set-up)."""
    from functools import partial

    import torch

    from mtp_bench.scheduler.ray_train import all_reduce_sum, wrap_module
    from mtp_bench.suite.config import TrialConfig
    from mtp_bench.train.loop import Distributed
    from mtp_bench.trial import run_trial

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    cpu, results = torch.device("cpu"), {}
    for document in trials:
        trial, log = TrialConfig.model_validate(document), []
        dist = Distributed(world_size=world, rank=rank, all_reduce_sum=partial(all_reduce_sum, device=cpu))
        outcome = run_trial(trial, workdir=Path(workdir) / trial.trial_id, dist=dist, device=cpu, progress=False,
                            wrap=partial(wrap_module, strategy="fsdp", device=cpu, dist=dist),
                            on_metrics=lambda metrics, step, log=log: log.append((step, metrics)))
        results[trial.method.name] = {"log": log, "final": outcome.metrics, "export": str(outcome.export_dir)}
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    torch.distributed.destroy_process_group()


def test_mutor_and_transformer_heads_under_fsdp_match_one_process(tmp_path, gsm8k_dir):
    """MuToR builds its input through the embeddings and draws register offsets at random; Gloeckle heads run copied
    decoder layers (sharded like the model's) through hooks on the last layer. Both, on 2 gloo ranks (spawned
    directly: the Ray Train path is the test above), match one process with twice the accumulation, and rank 0's
    lm-eval (transformers' generate) runs on the gathered weights alone."""
    import torch
    from safetensors.torch import load_file

    from mtp_bench.trial import run_trial

    methods = [{"name": "mutor"}, {"name": "mtp_heads"}]
    lm_eval = {"tasks": ["gsm8k_mutor_local"], "limit": 2, "max_gen_toks": 6, "batch_size": 2,
               "data_dir": str(gsm8k_dir), "checkpoints": "last"}
    evaluation = {"scorers": [{"name": "gsm8k"}], "max_new_tokens": 8, "every_steps": 2, "lm_eval": lm_eval}
    suite = make_suite(tmp_path, gsm8k_dir, methods=methods, baseline="mutor", evaluation=evaluation)
    path = write_suite(tmp_path, suite)
    single = expand_grid(load_suite(path, [*COMMON, "train.grad_accum=2"]))
    wide = expand_grid(load_suite(path, [*COMMON, *WIDE, "resources.strategy=fsdp"]))
    out = tmp_path / "fsdp.json"
    torch.multiprocessing.spawn(_fsdp_rank, nprocs=2, args=(2, f"file://{tmp_path / 'rendezvous'}",
                                                          [t.model_dump(mode="json") for t in wide],
                                                          str(tmp_path / "fsdp"), str(out)))
    sharded = json.loads(out.read_text())
    for trial in single:
        log: list = []
        outcome = run_trial(trial, workdir=tmp_path / "single" / trial.trial_id, progress=False,
                            on_metrics=lambda metrics, step, log=log: log.append((step, metrics)))
        got = sharded[trial.method.name]
        for name in ("train/loss", "train/grad_norm"):
            expected = [(step, m[name]) for step, m in log if name in m]
            history = [(step, m[name]) for step, m in got["log"] if name in m]
            assert [step for step, _ in history] == [step for step, _ in expected] == [1, 2, 3, 4]
            assert metric_values(history) == pytest.approx(metric_values(expected), abs=1e-5), (trial.method.name, name)
        scored = {k: v for k, v in outcome.metrics.items() if k.startswith(("last/", "best/"))}
        assert "last/lm_eval/gsm8k_mutor_local/n_samples" in scored
        assert {k: got["final"][k] for k in scored} == pytest.approx(scored, abs=1e-5), trial.method.name
    heads = [load_file(str(Path(export) / "extra" / "heads.safetensors"))
             for export in (outcome.export_dir, got["export"])]
    assert heads[0].keys() == heads[1].keys() and all(torch.allclose(heads[0][k], heads[1][k], atol=1e-5)
                                                      for k in heads[0])
