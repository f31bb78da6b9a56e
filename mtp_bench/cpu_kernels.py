"""The same numbers on every x86-64 machine: which CPU kernels torch and MKL use, chosen before torch loads.

torch and MKL pick their kernels by what the CPU offers: AVX-512 kernels on a CPU that has them, AVX2 kernels on one
that does not. Both are correct, but they round differently, and a training run that learns through a sudden
transition turns a last-bit difference into a different trajectory (issue 24: NTP seed 1 of the quick start scored
0.79 on one 2-core machine and 0.93 on another, same commit, same trial id). Measured here with a 40-step tiny Llama,
one thread: ``ATEN_CPU_CAPABILITY=default`` (torch's vectorised element-wise and reduction kernels) and
``MKL_CBWR=COMPATIBLE`` (MKL's matrix products) each changed every trained weight; ``MKL_CBWR=AVX2`` and
``ATEN_CPU_CAPABILITY=avx2`` left this AVX2 machine's numbers as they were, and thread counts 1 and 2 agreed.

So every command that computes pins the AVX2 level on x86-64 CPUs that have AVX2 (any Intel or AMD server CPU since
about 2015): torch's dispatch (``ATEN_CPU_CAPABILITY``), MKL's conditional numerical reproducibility (``MKL_CBWR``,
which fixes the code path and with it the rounding) and oneDNN's instruction set (``ONEDNN_MAX_CPU_ISA``). A variable
the user has set is left alone; ``MTP_BENCH_CPU_KERNELS=native`` turns the pinning off (the fastest kernels of this
CPU; numbers may then differ between machines). Thread counts are the trial's (``train.torch_threads``, else the CPUs
the scheduler reserved) and are part of what a trial is. The pinned values travel to Ray workers in the process
environment (a local Ray inherits the driver's) and in the runtime environment (a cluster). Provenance and trial tags
record the values a trial ran with.

This module imports nothing heavy: :func:`pin` must run before the first ``import torch``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping
from pathlib import Path

SWITCH = "MTP_BENCH_CPU_KERNELS"  # "portable" (default) or "native"
PORTABLE_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# Every variable that decides CPU numerics, recorded with each trial whether we set it or not.
RECORDED = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS", SWITCH)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The instruction-set flags of this CPU as Linux reports them (empty where there is no /proc/cpuinfo)."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def portable_settings(machine: str | None = None, flags: set[str] | None = None) -> dict[str, str]:
    """The kernel pins for this machine: AVX2 on an x86-64 CPU that has it; nothing elsewhere (ARM CPUs and old x86
    ones have one kernel level for torch, and no MKL)."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return {}
    if "avx2" not in (cpu_flags() if flags is None else flags):
        return {}
    return dict(PORTABLE_AVX2)


def pin(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the portable kernel choice in ``environ`` (the process environment by default) unless the user chose
    otherwise; returns what was set. Too late once torch is imported (its dispatch level is read at the first
    kernel call and kept), which is why the command line calls this first."""
    environ = os.environ if environ is None else environ
    if environ.get(SWITCH, "portable").lower() == "native":
        return {}
    added = {key: value for key, value in portable_settings().items() if key not in environ}
    environ.update(added)
    return added


def pinned_environment(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The pins in force in ``environ`` (for a Ray cluster's runtime environment: its workers start elsewhere)."""
    environ = os.environ if environ is None else environ
    return {key: environ[key] for key in PORTABLE_AVX2 if key in environ}

