"""Where and how a benchmark part was measured, written under its table: the user's settings, the machine, versions
and commit, the command, the load average before and after, and the time it took."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mtp_bench.bench.sizes import Sizes
from mtp_bench.tracking.provenance import git_commit

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Settings:
    """What the user chose for this run (recorded with every table)."""

    sizes: Sizes
    device: str  # "auto", "cpu", "cuda", ...
    threads: int  # torch CPU threads
    command: str  # the equivalent command line


def load_average() -> str:
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int) -> str:
    import psutil

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ram = psutil.virtual_memory().total / 2**30
    gpu = "no GPU"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = f"{torch.cuda.device_count()} x {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return (f"{_cpu_model()}, {os.cpu_count()} cores ({usable} usable), {ram:.1f} GiB RAM, {gpu}; "
            f"torch CPU threads {threads}; {platform.system()} {platform.release()}")


def versions() -> str:
    import importlib.metadata as metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    commit = git_commit(REPO, short=True, mark_local=True) or "unknown"
    return (f"python {platform.python_version()}, torch {torch.__version__}, transformers {version('transformers')}, "
            f"lm-eval {version('lm_eval')}, mtp-bench {version('mtp-bench')} (git {commit})")


@dataclass
class RunContext:
    """Machine, versions, command, load and time of one part: written under its table."""

    machine: str
    versions: str
    command: str
    load_before: str
    started: float = field(default_factory=time.time)
    load_after: str = ""
    seconds: float = 0.0

    @classmethod
    def begin(cls, settings: Settings) -> RunContext:
        return cls(machine(settings.threads), versions(), settings.command, load_average())

    def end(self) -> RunContext:
        self.load_after = load_average()
        self.seconds = time.time() - self.started
        return self
