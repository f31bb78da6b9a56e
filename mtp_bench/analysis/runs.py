"""Which trial runs an analysis uses, and how they group: one run per trial id (the newest finished one), restricted
to the suite's grid when it is known, grouped by method label and grid cell; and which code version (git commit)
each run comes from (:func:`runs_by_commit`), so a comparison never mixes versions unseen."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mtp_bench.tracking import TAG_ERROR, TAG_GIT
from mtp_bench.tracking.store import TrialRun

_CELL_ITEM = re.compile(r" (?=[A-Za-z0-9_.\-]+=)")
Excluded = tuple[str, str, str]  # (trial, status, reason)
UNKNOWN_COMMIT = "unknown"  # runs without a commit tag (not run from a git checkout)


def group_label(method: str, cell: str) -> str:
    """How tables name a method in a grid cell: ``mutor`` or ``mutor [method.params.a=0.1]``."""
    return f"{method} [{cell}]" if cell else method


@dataclass
class Group:
    """The finished runs of one method in one grid cell (one per seed)."""

    method: str
    cell: str
    runs: list[TrialRun]

    @property
    def label(self) -> str:
        return group_label(self.method, self.cell)

    def values(self, metric: str) -> dict[int | None, float]:
        """Per seed, the run's final value of ``metric`` (seeds without it left out)."""
        return {run.seed: run.metrics[metric] for run in self.runs if metric in run.metrics}

    def run(self, seed: int | None) -> TrialRun:
        return next(run for run in self.runs if run.seed == seed)


def shared_cell(cell: str) -> str:
    """The grid values a method's cell shares with the baseline's (its own ``method.*`` sweep values removed)."""
    return " ".join(item for item in _CELL_ITEM.split(cell) if item and not item.startswith("method."))


def seed_key(seed: int | None) -> tuple[bool, int]:
    return (seed is None, seed if seed is not None else 0)


def select_runs(runs: list[TrialRun], expected: dict[str, str] | None) -> tuple[list[TrialRun], list[Excluded]]:
    """One run per trial id (the newest finished one, else the newest), restricted to the suite's trials when
    ``expected`` (trial id -> label) is given; returns (finished runs, excluded rows). ``runs`` come newest first."""
    chosen: dict[str, TrialRun] = {}
    excluded: list[Excluded] = []
    for run in runs:
        kept = chosen.get(run.trial_id)
        if kept is None or (kept.status != "FINISHED" and run.status == "FINISHED"):
            if kept is not None:
                excluded.append((kept.label, kept.status, "superseded by a finished run of the same trial"))
            chosen[run.trial_id] = run
        elif run.status == "FINISHED":
            excluded.append((run.label, run.status, "older repeat of the same trial (the newest is used)"))
    other = [tid for tid in chosen if expected is not None and tid not in expected]
    if other:
        excluded.append((f"{len(other)} run(s)", "-", "other configurations of this experiment, not in the suite"))
    finished = []
    for trial_id, run in chosen.items():
        if trial_id in other:
            continue
        if run.status == "FINISHED":
            finished.append(run)
        else:
            reason = run.tags.get(TAG_ERROR) or ("still running or interrupted" if run.status == "RUNNING" else "")
            excluded.append((run.label, run.status, reason))
    for trial_id, label in (expected or {}).items():
        if trial_id not in chosen:
            excluded.append((label, "MISSING", "not run yet"))
    return finished, excluded


def group_runs(runs: list[TrialRun], baseline: str | None,
               method_order: list[str] | None = None) -> tuple[list[Group], str]:
    """Groups by method (baseline first, then suite order) and cell, each group's runs in seed order; and the
    baseline label (``ntp`` when present and none is given, else the first method)."""
    order = method_order or []
    methods = sorted({run.method for run in runs}, key=lambda m: order.index(m) if m in order else len(order))
    if baseline is None:
        baseline = "ntp" if "ntp" in methods else (methods[0] if methods else "ntp")
    methods.sort(key=lambda m: m != baseline)  # stable: the baseline first, the rest in suite order
    cells = sorted({run.cell for run in runs})
    groups = [Group(m, c, sorted((r for r in runs if r.method == m and r.cell == c), key=lambda r: seed_key(r.seed)))
              for m in methods for c in cells]
    return [g for g in groups if g.runs], baseline


def baseline_group(groups: list[Group], group: Group, baseline: str) -> Group | None:
    """The baseline's group sharing ``group``'s grid cell (None for the baseline itself or when missing)."""
    partner = next((g for g in groups if g.method == baseline and g.cell == shared_cell(group.cell)), None)
    return None if partner is None or partner is group else partner


def runs_by_commit(runs: list[TrialRun]) -> dict[str, list[tuple[str, int | None]]]:
    """{git commit: [(method label, seed), ...]} of ``runs`` (full hashes; ``UNKNOWN_COMMIT`` for runs without the
    tag), the commit with the most runs first (``UNKNOWN_COMMIT`` last), pairs in method-label then seed order. More
    than one key means the runs come from more than one code version."""
    out: dict[str, list[tuple[str, int | None]]] = {}
    for run in runs:
        out.setdefault(run.tags.get(TAG_GIT) or UNKNOWN_COMMIT, []).append((group_label(run.method, run.cell),
                                                                             run.seed))
    order = sorted(out, key=lambda commit: (commit == UNKNOWN_COMMIT, -len(out[commit]), commit))
    return {commit: sorted(out[commit], key=lambda pair: (pair[0], seed_key(pair[1]))) for commit in order}
