"""The end-of-run table: which trials finished, failed or were skipped, with their headline metric."""

from __future__ import annotations

from typing import Any

from mtp_bench.scheduler.reports import FAILED, FINISHED, TrialReport

_STYLE = {FINISHED: "green", FAILED: "red"}


def headline(metrics: dict[str, float]) -> tuple[str, float] | None:
    """The metric a reader wants first: a scorer's test score of the selected checkpoint, else of the last one,
    else the held-out test loss."""
    for prefix in ("best/test/", "best_on_test/test/", "last/test/"):
        keys = sorted(k for k in metrics if k.startswith(prefix))
        scored = [k for k in keys if not k[len(prefix) :].startswith(("loss", "acc/"))]
        chosen = scored or [k for k in keys if k == prefix + "loss"]
        if chosen:
            return chosen[0], metrics[chosen[0]]
    return None


def print_summary(console: Any, reports: list[TrialReport]) -> None:
    from rich.table import Table

    table = Table(title="Trials")
    for column in ("trial", "status", "headline metric", "seconds", "run id / error"):
        table.add_column(column)
    for report in reports:
        found = headline(report.metrics)
        metric = f"{found[0]} = {found[1]:.4f}" if found else ""
        detail = report.error if report.status == FAILED else (report.run_id or "")
        style = _STYLE.get(report.status, "yellow")
        table.add_row(report.label, f"[{style}]{report.status}[/]", metric, f"{report.seconds:.0f}", detail)
    console.print(table)
    failed = sum(r.status == FAILED for r in reports)
    if failed:
        console.print(f"[red]{failed} of {len(reports)} trials failed[/]; the others are recorded. "
                      "Fix the cause and rerun with --resume to run only what is missing.")
