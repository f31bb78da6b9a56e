"""How a worker process sets itself up before a trial, wherever a scheduler placed it: the driver's working
directory and the number of torch threads."""

from __future__ import annotations

import os
from pathlib import Path

from mtp_bench.suite.models import TrialConfig


def torch_threads(trial: TrialConfig, reserved_cpus: float | None) -> int | None:
    """CPU threads for torch: ``train.torch_threads``, else the CPUs the scheduler reserved (None: leave as is)."""
    if trial.train.torch_threads:
        return trial.train.torch_threads
    return max(1, int(reserved_cpus)) if reserved_cpus else None


def enter_driver_directory(cwd: str) -> None:
    """Relative paths in a suite mean what they meant where ``mtp-bench run`` started (Tune and Train move workers
    elsewhere); on other machines the folder may not exist, and suites there need absolute paths anyway."""
    if Path(cwd).is_dir():
        os.chdir(cwd)
