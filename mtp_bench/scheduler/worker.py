"""How a worker process sets itself up before a trial, wherever a scheduler placed it: the driver's working
directory, the number of torch threads, and what an earlier trial in the same process may have changed."""

from __future__ import annotations

import os
from pathlib import Path

from mtp_bench.suite.config import TrialConfig


def torch_threads(trial: TrialConfig, reserved_cpus: float | None) -> int | None:
    """CPU threads for torch: ``train.torch_threads``, else the CPUs the scheduler reserved (None: leave as is)."""
    if trial.train.torch_threads:
        return trial.train.torch_threads
    return max(1, int(reserved_cpus)) if reserved_cpus else None


def enter_driver_directory(cwd: str) -> None:
    """Relative paths in a suite mean what they meant where ``mtp-bench run`` started (Ray starts workers
    elsewhere); on other machines the folder may not exist, and suites there need absolute paths anyway."""
    if Path(cwd).is_dir():
        os.chdir(cwd)


def reset_process_state(trial: TrialConfig) -> None:
    """What one trial may have changed in this process, set for ``trial`` alone: the torch threads (the CPUs the
    scheduler reserved, or ``train.torch_threads``) and deterministic algorithms (off unless the trial asks; the
    trial's own seeding turns them on). The random generators are seeded by the trial itself (``prepare``)."""
    import torch

    torch.use_deterministic_algorithms(False)
    if trial.resources.num_workers == 1:  # a multi-worker trial's ranks set their own, in their own processes
        torch.set_num_threads(torch_threads(trial, trial.resources.cpus_per_trial) or 1)


def node_id() -> str:
    """The Ray node this process runs on (the host name outside Ray)."""
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    import socket

    return socket.gethostname()
