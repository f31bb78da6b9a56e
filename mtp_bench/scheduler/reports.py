"""What a scheduler reports about each trial: its status, run, metrics, error, time and place."""

from __future__ import annotations

from dataclasses import dataclass, field

from mtp_bench.suite.config import TrialConfig

FINISHED, FAILED, SKIPPED = "FINISHED", "FAILED", "SKIPPED"


@dataclass
class TrialReport:
    trial_id: str
    label: str
    method: str
    seed: int
    status: str
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    node: str | None = None  # where it ran (Ray node id or host name)
    attempt: int = 1  # 1 on the first try; retries count up
    lock_retries: int = 0  # store writes of this trial retried because SQLite was locked
    started_at: float | None = None  # when the trial's own timer started (seconds since the epoch)


def new_report(trial: TrialConfig, status: str = FAILED, node: str | None = None) -> TrialReport:
    return TrialReport(trial.trial_id, trial.label, trial.method.display_name, trial.seed, status, node=node)


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")
