"""A trial larger than one device: data-parallel training through Ray Train's ``TorchTrainer``.

Every worker runs the same :func:`mtp_bench.trial.run_trial` (the one shared loop) with a :class:`Distributed` that
sums over the process group and a ``wrap`` that puts the :class:`TrainModule` in DDP (``resources.strategy: ddp``)
or shards it with FSDP2 (``fsdp``, see :mod:`mtp_bench.train.sharding`).
The step sampler gives each rank its slice of the same ``batch_size x grad_accum x world_size`` examples, so the
effective batch of a suite does not change with the number of workers. Rank 0 alone holds the MLflow run: it logs,
evaluates, checkpoints and exports; the other ranks wait for it at their next collective. Under FSDP every rank
first takes part in gathering the sharded weights (``Distributed.gathered``) and in gathering checkpoint tensors.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mtp_bench.suite.config import TrialConfig

if TYPE_CHECKING:
    from mtp_bench.train.loop import Distributed

# Rank 0 evaluates (generation on the whole validation split) while the other ranks wait at a collective: the
# process-group timeout must outlast the longest evaluation, not a training step (gloo's default is 30 minutes).
COLLECTIVE_TIMEOUT_S = 6 * 3600


def run_distributed(
    trial: TrialConfig,
    workdir: Path,
    tracker: Any,
    run_id: str,
    on_metrics: Callable[[dict[str, float], int], None] | None,
) -> dict[str, float]:
    """Train and evaluate ``trial`` on ``resources.num_workers`` Ray Train workers; return its final metrics (read
    back from the store, where rank 0 wrote them). Raises what the workers raised."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    res = trial.resources
    use_gpu = res.gpus_per_trial > 0
    per_worker = {"CPU": res.cpus_per_trial, **({"GPU": res.gpus_per_trial} if use_gpu else {})}
    storage = Path(workdir) / "_ray_train"  # Ray Train's own run state; ours is the MLflow run and the checkpoint
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"trial": trial.model_dump(mode="json"), "workdir": str(workdir), "run_id": run_id,
                           "on_metrics": on_metrics, "cwd": os.getcwd()},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo", timeout_s=COLLECTIVE_TIMEOUT_S),
        scaling_config=ray.train.ScalingConfig(num_workers=res.num_workers, use_gpu=use_gpu,
                                               resources_per_worker=per_worker),
        # A failed worker fails the trial; retries are the grid's (resources.max_retries), from our checkpoint.
        run_config=ray.train.RunConfig(name=f"{trial.trial_id}-{run_id[:8]}", storage_path=str(storage),
                                       failure_config=ray.train.FailureConfig(max_failures=0)),
    )
    try:
        trainer.fit()
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return tracker.metrics(run_id)


def train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: one rank of the trial."""
    import ray.train
    import ray.train.torch

    from mtp_bench.scheduler.worker import enter_driver_directory, torch_threads
    from mtp_bench.tracking import Tracker
    from mtp_bench.train.loop import Distributed
    from mtp_bench.trial import run_trial

    enter_driver_directory(config["cwd"])
    trial = TrialConfig.model_validate(config["trial"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(torch_threads(trial, trial.resources.cpus_per_trial) or 1)
    device = ray.train.torch.get_device() if trial.resources.gpus_per_trial > 0 else torch.device("cpu")
    workdir = Path(config["workdir"])
    reduce = partial(all_reduce_sum, device=device)
    check_checkpoint_visible(workdir, rank, world, reduce)
    main = rank == 0
    dist = Distributed(world_size=world, rank=rank, all_reduce_sum=reduce)
    run_trial(
        trial,
        workdir=workdir,
        tracker=Tracker(trial.tracking.uri, trial.tracking.experiment or trial.suite) if main else None,
        run_id=config["run_id"] if main else None,
        dist=dist,
        device=device,
        wrap=partial(wrap_module, strategy=trial.resources.strategy, device=device, dist=dist),
        progress=False,
        on_metrics=config["on_metrics"] if main else None,
    )


def all_reduce_sum(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sum over ranks. NCCL reduces only device tensors, and the loop hands some CPU ones: move, reduce, move back."""
    moved = tensor.to(device)
    torch.distributed.all_reduce(moved)
    return moved.to(tensor.device)


def check_checkpoint_visible(workdir: Path, rank: int, world: int, reduce: Callable[[torch.Tensor], torch.Tensor]):
    """Every rank loads the checkpoint itself; if only some see it (a workdir not shared between nodes), they would
    start from different steps and hang. Fail clearly instead."""
    from mtp_bench.train.checkpoint import has_checkpoint

    seen = reduce(torch.tensor([1.0 if has_checkpoint(workdir / "checkpoint") else 0.0], dtype=torch.float64))
    if 0 < seen.item() < world:
        raise RuntimeError(f"only {int(seen.item())} of {world} workers see the checkpoint in {workdir}: on a "
                           "multi-node cluster tracking.workdir must be on storage every node mounts (e.g. NFS)")


def wrap_module(module: nn.Module, *, strategy: str, device: torch.device, dist: Distributed) -> nn.Module:
    """The data-parallel wrapper the loop runs forward and backward through. DDP: ``module`` stays the unwrapped
    replica for rank 0's evaluation, checkpoints and export. FSDP: ``module`` itself is sharded, and ``dist.gathered``
    gathers it whole for them."""
    if strategy == "fsdp":
        from mtp_bench.train import sharding

        sharded = sharding.shard(module, device, dist.world_size)
        dist.gathered = partial(sharding.gathered, sharded, keep=dist.is_main)
        return sharded
    if strategy != "ddp":
        raise ValueError(f"unknown resources.strategy {strategy!r} (ddp or fsdp)")
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
