"""Timing under load. These machines are shared and noisy, so compared variants run interleaved: every round runs
each variant once on the *same* batch (order reversed every other round, so that neither always goes first), and the
reported ratio is the median of the per-round ratios, with its inter-quartile range. A ratio taken inside one round
is measured under (nearly) the same load on both sides; a ratio of two separate averages is not.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Spread:
    median: float
    q1: float
    q3: float
    n: int

    def text(self, digits: int = 3) -> str:
        return f"{self.median:.{digits}f} [{self.q1:.{digits}f}–{self.q3:.{digits}f}]"


def spread(values: list[float]) -> Spread:
    """Median and inter-quartile range (the range itself with fewer than 4 values)."""
    if not values:
        raise ValueError("no values")
    if len(values) < 4:
        return Spread(statistics.median(values), min(values), max(values), len(values))
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Spread(statistics.median(values), q1, q3, len(values))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Interleaved:
    """Wall-clock seconds, CPU seconds of this process and return values of each variant, one entry per measured
    round (warm-up rounds excluded). CPU time does not run while other processes hold the cores, so on a loaded
    CPU-only machine its ratios are far less noisy than wall-clock ones (on a GPU it is meaningless: kernels run
    asynchronously)."""

    seconds: dict[str, list[float]]
    cpu_seconds: dict[str, list[float]]
    results: dict[str, list[Any]]

    def ratios(self, name: str, baseline: str, cpu: bool = False) -> list[float]:
        """Per-round time ratio ``name / baseline`` (same round, same batch)."""
        times = self.cpu_seconds if cpu else self.seconds
        return [a / b for a, b in zip(times[name], times[baseline])]


def interleave(calls: dict[str, Callable[[int], Any]], *, rounds: int, warmup: int,
               device: torch.device) -> Interleaved:
    """Run every call once per round, ``warmup`` rounds untimed first; ``calls[name](index)`` gets the round index
    (warm-up rounds included), so that all variants of a round see the same batch."""
    names = list(calls)
    for index in range(warmup):
        for name in names:
            calls[name](index)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in names}
    results: dict[str, list[Any]] = {name: [] for name in names}
    for offset in range(rounds):
        index = warmup + offset
        for name in names if offset % 2 == 0 else reversed(names):
            synchronize(device)
            started, cpu_started = time.perf_counter(), time.process_time()
            result = calls[name](index)
            synchronize(device)
            seconds[name].append(time.perf_counter() - started)
            cpu_seconds[name].append(time.process_time() - cpu_started)
            results[name].append(result)
    return Interleaved(seconds, cpu_seconds, results)


def number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"
