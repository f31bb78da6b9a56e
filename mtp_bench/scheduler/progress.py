"""How long a grid has left, from what it measured: finished trials' durations and running trials' step rates.

No guess enters the estimate: until a trial has finished or a running one has reported a step of a known total,
there is no ETA (shown as "—"). The grid's remaining time is a small simulation of its slots: each running trial
frees its slot when its own estimate runs out, and each waiting trial takes the first free slot for as long as its
kind of trial (same label without the seed) took or is projected to take, else as long as any trial did on average.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from statistics import fmean

_SEED = re.compile(r"\s*\bseed=-?\d+\b")
UNKNOWN = "—"


def kind_of(label: str) -> str:
    """Trials of one kind (method and grid cell) take about as long as each other: the label without its seed."""
    return _SEED.sub("", label).strip()


@dataclass
class Running:
    """A running trial as the estimate sees it."""

    kind: str
    elapsed: float  # seconds since it started
    step: int
    total: int | None

    def projected(self) -> float | None:
        """Its whole duration at its step rate so far (None before its first step of a known total)."""
        if not self.total or self.step <= 0:
            return None
        return self.elapsed * self.total / self.step


def remaining_seconds(finished: dict[str, list[float]], running: list[Running], waiting: list[str],
                      slots: int) -> float | None:
    """Seconds until the last trial ends: ``finished`` durations by kind, the ``running`` trials, the kinds of the
    ``waiting`` ones and how many run at once (``slots``). None while nothing has been measured."""
    if not running and not waiting:
        return 0.0
    every = [s for durations in finished.values() for s in durations]
    projected: dict[str, list[float]] = {}
    for trial in running:
        if trial.projected() is not None:
            projected.setdefault(trial.kind, []).append(trial.projected())

    def typical(kind: str) -> float | None:
        """Its kind's finished trials, else its kind's running ones, else any finished, else any running."""
        for pool in (finished.get(kind), projected.get(kind), every, [p for ps in projected.values() for p in ps]):
            if pool:
                return fmean(pool)
        return None

    free: list[float] = []
    for trial in running:
        own = [x for x in (trial.projected(), fmean(finished[trial.kind]) if finished.get(trial.kind) else None)
               if x is not None]
        whole = fmean(own) if own else typical(trial.kind)
        if whole is None:
            return None
        free.append(max(whole - trial.elapsed, 0.0))
    free += [0.0] * max(slots - len(running), 0)
    if not free:
        free = [0.0]
    heapq.heapify(free)
    for kind in waiting:
        duration = typical(kind)
        if duration is None:
            return None
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


def clock(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``; empty for None."""
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


def eta_text(seconds: float | None) -> str:
    return f"ETA {UNKNOWN}" if seconds is None else f"ETA {clock(seconds)}"
