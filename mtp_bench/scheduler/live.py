"""One live view of a grid in the driver: trials queued, running, done, with their step and current metrics, how
many are done of how many and an ETA (:mod:`~mtp_bench.scheduler.progress`), and the mailbox that carries those
from the workers.

Workers never draw anything (their progress bars would interleave); they send small messages that the scheduler
feeds in here. On a terminal the view is a rich ``Live`` table redrawn in place; elsewhere (CI logs, a cluster
job's output) it prints one line when a trial starts, retries or ends, and a progress line
(``3/30 done, 2 running: mutor seed=2 step 400/1000, ...; ETA 2m10s``) after each end and every
:data:`PROGRESS_EVERY_S` seconds. The same lines always go to a log file too (:func:`progress_log`), so that a
grid running in a terminal can be followed from elsewhere (``tail -f``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mtp_bench.scheduler.attempt import OpenedRun
from mtp_bench.scheduler.progress import Running, clock, eta_text, kind_of, remaining_seconds
from mtp_bench.scheduler.reports import FAILED, FINISHED, SKIPPED, TrialReport

QUEUED, RUNNING, RETRYING = "QUEUED", "RUNNING", "RETRYING"
_STYLE = {QUEUED: "dim", RUNNING: "cyan", RETRYING: "yellow", FINISHED: "green", FAILED: "red", SKIPPED: "blue"}
_ORDER = {RUNNING: 0, RETRYING: 1, FAILED: 2, FINISHED: 3, SKIPPED: 4, QUEUED: 5}
TRAIN_METRIC = "train/loss"
TOTAL_STEPS = "train/total_steps"
PROGRESS_EVERY_S = 30.0
"""Seconds between progress lines when nothing ends (plain output and the log file)."""
SHOWN_RUNNING = 4  # running trials named in a progress line; the rest are counted


def progress_log(workdir: str | Path, suite: str) -> Path:
    """The grid's progress log: ``<tracking.workdir>/<suite>/progress.log``, beside its trials' folders."""
    return Path(workdir) / suite / "progress.log"


def live_subset(metrics: dict[str, float]) -> dict[str, float]:
    """The few values the view shows, picked on the worker so that messages stay small: the training loss, the
    planned number of steps, and evaluation results (``val/``, ``test/``, ``last/``, ``best/`` keys)."""
    keep = {k: v for k, v in metrics.items() if k in (TRAIN_METRIC, TOTAL_STEPS)}
    evaluated = {k: v for k, v in metrics.items() if k.split("/", 1)[0] in ("val", "test", "last", "best")}
    keep.update(evaluated)
    return {k: float(v) for k, v in keep.items() if isinstance(v, int | float)}


def eval_headline(metrics: dict[str, float]) -> tuple[str, float] | None:
    """A scorer's result if one was logged (not a per-term loss or accuracy), else the held-out loss."""
    keys = sorted(metrics)
    scored = [k for k in keys if "/" in k and not k.split("/", 1)[1].startswith(("loss", "acc/"))]
    if scored:
        return scored[0], metrics[scored[0]]
    losses = [k for k in keys if k.endswith("/loss")]
    return (losses[0], metrics[losses[0]]) if losses else None


@dataclass
class Row:
    trial_id: str
    label: str
    status: str = QUEUED
    step: int = 0
    total: int | None = None
    loss: float | None = None
    evaluation: tuple[str, float] | None = None
    node: str | None = None
    attempt: int = 1
    started: float | None = None
    seconds: float | None = None
    error: str | None = None


class GridView:
    """State of every trial of a grid and its rendering. Methods are called from the driver thread only."""

    def __init__(self, trials: list[tuple[str, str]], console: Any = None, max_rows: int = 24,
                 log: Path | None = None, every: float = PROGRESS_EVERY_S):
        self.rows = {trial_id: Row(trial_id, label) for trial_id, label in trials}
        self.console = console
        self.max_rows = max_rows
        self.started_at = time.monotonic()
        self.log_path, self.every = log, every
        self.slots = 1  # the most trials seen running at once: how many the grid runs side by side
        self._live: Any = None
        self._log: IO[str] | None = None
        self._last_progress = self.started_at
        self._last_line = ""

    # ------------------------------------------------------------------------------------------ updates ----
    def placed(self, trial_id: str) -> None:
        """The scheduler gave the trial its resources; it is starting (no line: :meth:`start` follows)."""
        row = self.rows[trial_id]
        row.status, row.started = RUNNING, time.monotonic()
        self._count_slots()

    def start(self, trial_id: str, node: str | None = None, attempt: int = 1) -> None:
        row = self.rows[trial_id]
        row.status, row.attempt, row.started, row.error = RUNNING, attempt, time.monotonic(), None
        row.node = node or row.node
        self._count_slots()
        self._line(row, f"started{f' (attempt {attempt})' if attempt > 1 else ''}"
                        f"{f' on {_short(row.node)}' if row.node else ''}")

    def update(self, trial_id: str, metrics: dict[str, float], step: int) -> None:
        row = self.rows[trial_id]
        if row.status == QUEUED:
            row.status, row.started = RUNNING, time.monotonic()
            self._count_slots()
        row.step = max(row.step, step)
        if TOTAL_STEPS in metrics:
            row.total = int(metrics[TOTAL_STEPS])
        if TRAIN_METRIC in metrics and math.isfinite(metrics[TRAIN_METRIC]):
            row.loss = metrics[TRAIN_METRIC]
        found = eval_headline({k: v for k, v in metrics.items() if k not in (TRAIN_METRIC, TOTAL_STEPS)})
        if found is not None:
            row.evaluation = found

    def retrying(self, trial_id: str, error: str | None) -> None:
        row = self.rows[trial_id]
        row.status, row.error = RETRYING, error
        self._line(row, f"failed, retrying: {error or 'worker lost'}")

    def finish(self, report: TrialReport) -> None:
        row = self.rows[report.trial_id]
        row.status, row.error, row.seconds, row.attempt = report.status, report.error, report.seconds, report.attempt
        row.node = report.node or row.node
        from mtp_bench.scheduler.summary import headline

        found = headline(report.metrics)
        if found is not None:
            row.evaluation = found
        self._line(row, report.status.lower() + (f": {report.error}" if report.error else ""))
        if report.status != SKIPPED:  # skipped trials are reported all at once before the grid starts
            self.progress()

    def counts(self) -> dict[str, int]:
        out = {status: 0 for status in _ORDER}
        for row in self.rows.values():
            out[row.status] += 1
        return out

    def _count_slots(self) -> None:
        self.slots = max(self.slots, sum(r.status == RUNNING for r in self.rows.values()))

    # ----------------------------------------------------------------------------------------- progress ----
    def eta(self, now: float | None = None) -> float | None:
        """Seconds until the grid ends, from measured durations and step rates (None: nothing measured yet)."""
        now = time.monotonic() if now is None else now
        finished: dict[str, list[float]] = {}
        running, waiting = [], []
        for row in self.rows.values():
            if row.status == FINISHED and row.seconds:
                finished.setdefault(kind_of(row.label), []).append(row.seconds)
            elif row.status == RUNNING:
                elapsed = now - row.started if row.started is not None else 0.0
                running.append(Running(kind_of(row.label), elapsed, row.step, row.total))
            elif row.status in (QUEUED, RETRYING):
                waiting.append(kind_of(row.label))
        return remaining_seconds(finished, running, waiting, self.slots)

    def progress_line(self, now: float | None = None) -> str:
        """``3/30 done, 2 running: mutor seed=2 step 400/1000, ntp seed=3 step 120/1000; ETA 2m10s``."""
        counts = self.counts()
        done = counts[FINISHED] + counts[FAILED] + counts[SKIPPED]
        text = f"{done}/{len(self.rows)} done" + (f" ({counts[FAILED]} failed)" if counts[FAILED] else "")
        running = sorted((r for r in self.rows.values() if r.status == RUNNING), key=lambda r: r.started or 0.0)
        if running:
            named = [f"{r.label} step {r.step}/{r.total}" if r.total else f"{r.label} starting"
                     for r in running[:SHOWN_RUNNING]]
            more = len(running) - SHOWN_RUNNING
            text += f", {len(running)} running: " + ", ".join(named) + (f", +{more} more" if more > 0 else "")
        return f"{text}; {eta_text(self.eta(now))}"

    def progress(self) -> None:
        """A progress line, now (after a trial ends)."""
        self._last_progress = time.monotonic()
        self._last_line = self.progress_line()
        self._write(self._last_line, to_console=self._live is None)

    def tick(self) -> None:
        """Called often by the scheduler's loop: a progress line when :attr:`every` seconds passed without one."""
        if time.monotonic() - self._last_progress >= self.every:
            self.progress()

    # --------------------------------------------------------------------------------------- rendering ----
    def render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        counts = self.counts()
        done = counts[FINISHED] + counts[FAILED] + counts[SKIPPED]
        parts = [f"[{_STYLE[s]}]{counts[s]} {s.lower()}[/]" for s in _ORDER if counts[s] or s in (QUEUED, RUNNING)]
        header = Table.grid(padding=(0, 1))
        header.add_row(Text.from_markup(f"grid: {done}/{len(self.rows)} done"), ProgressBar(len(self.rows), done, 24),
                       Text.from_markup(f"{' · '.join(parts)}   elapsed {_clock(time.monotonic() - self.started_at)}"
                                        f"   {eta_text(self.eta())}"))
        table = Table(show_edge=False, pad_edge=False, expand=False)
        for column in ("trial", "status", "step", "train/loss", "evaluation", "node", "time"):
            table.add_column(column, no_wrap=column in ("status", "step", "time"))
        rows = sorted(self.rows.values(), key=lambda r: (_ORDER[r.status], r.label))
        hidden = max(0, len(rows) - self.max_rows)
        for row in rows[: self.max_rows]:
            table.add_row(*self._cells(row))
        renderables: list[Any] = [header, table]
        if hidden:
            renderables.append(Text(f"... and {hidden} more (queued or done)", style="dim"))
        return Group(*renderables)

    def _cells(self, row: Row) -> list[str]:
        status = f"[{_STYLE[row.status]}]{row.status.lower()}[/]"
        if row.attempt > 1:
            status += f" (try {row.attempt})"
        step = f"{row.step}/{row.total}" if row.total else (str(row.step) if row.step else "")
        loss = f"{row.loss:.4f}" if row.loss is not None else ""
        evaluation = f"{row.evaluation[0]} {row.evaluation[1]:.4g}" if row.evaluation else ""
        if row.status == FAILED and row.error:
            evaluation = f"[red]{row.error[:80]}[/]"
        seconds = row.seconds if row.seconds is not None else (
            time.monotonic() - row.started if row.started is not None and row.status == RUNNING else None)
        return [row.label, status, step, loss, evaluation, _short(row.node), _clock(seconds) if seconds else ""]

    # ------------------------------------------------------------------------------------------ display ----
    def __enter__(self) -> GridView:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("a", encoding="utf-8", buffering=1)  # line-buffered: `tail -f` follows
            self._log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}: a grid of {len(self.rows)} trials\n")
        if self.console is not None and getattr(self.console, "is_terminal", False):
            from rich.live import Live

            # transient: the summary table printed after the run replaces the live one
            self._live = Live(get_renderable=self.render, console=self.console, refresh_per_second=2, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        if self._log is not None:
            last = self.progress_line() + (" (interrupted)" if exc and exc[0] is not None else "")
            if last != self._last_line:  # the state the grid ended in, unless the last line said it already
                self._write(last, to_console=False)
            self._log.close()
            self._log = None

    def _line(self, row: Row, text: str) -> None:
        """State changes: plain lines outside a terminal, and in the log file."""
        self._write(f"{row.label}: {text}", to_console=self._live is None)

    def _write(self, text: str, *, to_console: bool) -> None:
        line = f"[{_clock(time.monotonic() - self.started_at)}] {text}"
        if to_console and self.console is not None:
            self.console.print(line, markup=False)
        if self._log is not None:
            self._log.write(line + "\n")


# ------------------------------------------------------------------------------------ worker -> driver feed ----
class Mailbox:
    """A Ray actor (0 CPUs) that holds messages from trials until the driver takes them."""

    def __init__(self) -> None:
        self.items: list[tuple] = []

    def post(self, item: tuple) -> None:
        self.items.append(item)

    def take(self) -> list[tuple]:
        items, self.items = self.items, []
        return items


class Sender:
    """What a trial (its pool worker, or rank 0 of its Ray Train workers) tells the driver. Posts are fire-and-forget
    except the final report; training metrics are thinned to two a second, evaluation results always go."""

    def __init__(self, mailbox: Any, trial_id: str, node: str):
        self.mailbox, self.trial_id, self.node = mailbox, trial_id, node
        self._last = 0.0

    def opened(self, opened: OpenedRun) -> None:
        self.mailbox.post.remote(("open", self.trial_id, self.node, opened.run_id, opened.attempt))

    def metrics(self, metrics: dict[str, float], step: int) -> None:
        subset = live_subset(metrics)
        evaluated = any(not k.startswith("train/") for k in subset)
        now = time.monotonic()
        if subset and (evaluated or now - self._last >= 0.5):
            self._last = now
            self.mailbox.post.remote(("metrics", self.trial_id, step, subset))

    def done(self, report: dict[str, Any]) -> None:
        import ray

        ray.get(self.mailbox.post.remote(("done", self.trial_id, report)))  # delivered before the trial ends


def _short(node: str | None) -> str:
    return (node or "")[:8]


_clock = clock  # the lines' time stamps (``[1m41s]``), which ``mtp-bench bench --parts quickstart`` reads back
