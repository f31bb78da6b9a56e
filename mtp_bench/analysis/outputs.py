"""The files of a comparison and where they go: ``compare.md``, ``compare.csv``, ``accuracy.png``,
``accuracy_over_steps.png`` and ``provenance.yaml`` under ``results/<suite>/`` (or ``--output``), and the same
after ``mtp-bench run`` (printed, and attached to the invocation's parent run).

``provenance.yaml`` is what a reproduction needs, machine-readable: the suite file and overrides, the command that
re-runs the grid, the git commit(s) recorded on the compared runs, the headline metric and, per method and seed,
its committed value at every checkpoint (``python -m mtp_bench.analysis.reproduce`` reads it).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from mtp_bench.analysis import plots
from mtp_bench.analysis.comparison import Comparison, build_comparison
from mtp_bench.analysis.render import markdown, print_comparison, write_csv
from mtp_bench.tracking.store import Store, absolute_store

PROVENANCE = "provenance.yaml"


def compare_suite(suite: Any, *, store_uri: str | None = None, experiment: str | None = None,
                  baseline: str | None = None, metric: str | None = None) -> Comparison:
    """The comparison of a loaded suite's grid (its trials only) from its store, or ``store_uri``."""
    from mtp_bench.suite import expand_grid

    expected = {trial.trial_id: trial.label for trial in expand_grid(suite)}
    store = Store(absolute_store(store_uri or suite.tracking.uri), experiment or suite.tracking.experiment
                  or suite.name)
    return build_comparison(store, title=f"Comparison: {suite.name}", baseline=baseline or suite.baseline,
                            suite=suite.name, expected=expected, method_order=[m.display_name for m in suite.methods],
                            metric=metric, reference=suite.reference)


def provenance(comparison: Comparison, suite_path: str | None, overrides: list[str]) -> dict[str, Any]:
    """The machine-readable record of where a results folder's numbers come from."""
    values: dict[str, dict[str, dict[str, float]]] = {}
    for row in comparison.headline_rows():
        for seed, value in row.group.values(row.full_metric).items():
            values.setdefault(row.group.label, {}).setdefault(str(seed), {})[row.checkpoint] = value
    command = ["mtp-bench", "run", suite_path, *overrides] if suite_path else None
    return {
        "suite": suite_path,
        "overrides": list(overrides),
        "command": shlex.join(command) if command else None,
        "commits": comparison.commits,
        "store": comparison.store,
        "metric": comparison.headline,
        "values": values,
    }


def write_outputs(comparison: Comparison, folder: Path, suite_path: str | None = None,
                  overrides: list[str] | None = None) -> list[Path]:
    """compare.md, compare.csv, the figures and provenance.yaml; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "compare.md", folder / "compare.csv", folder / PROVENANCE]
    written[0].write_text(markdown(comparison))
    write_csv(comparison, written[1])
    written[2].write_text(yaml.safe_dump(provenance(comparison, suite_path, overrides or []), sort_keys=False,
                                         width=1000))
    points = [plots.Point(r.group.method, r.group.cell, r.checkpoint, r.summary.mean, r.summary.low,
                          r.summary.high, list(r.summary.values)) for r in comparison.headline_rows()]
    if points:
        figure = plots.accuracy_figure(points, comparison.headline, comparison.title)
        figure.savefig(folder / "accuracy.png", dpi=110)
        written.append(folder / "accuracy.png")
    if comparison.curves:
        periodic = comparison.periodic_metric
        figure = plots.curves_figure(comparison.curves, periodic, f"{comparison.title}: during training")
        figure.savefig(folder / "accuracy_over_steps.png", dpi=110)
        written.append(folder / "accuracy_over_steps.png")
    return written


def compare_after_run(suite: Any, parent_run_id: str, console: Any, suite_path: str | None = None,
                      overrides: list[str] | None = None) -> None:
    """After ``mtp-bench run``: print the comparison, write it under results/<suite>/ and attach it to the parent
    run. A failure here never fails the run: the trials are recorded and ``mtp-bench compare`` retries."""
    from mtp_bench.tracking import Tracker

    try:
        comparison = compare_suite(suite)
        written = write_outputs(comparison, Path("results") / suite.name, suite_path, overrides)
        print_comparison(console, comparison, written)
        tracker = Tracker(suite.tracking.uri, suite.tracking.experiment or suite.name)
        for path in written:
            tracker.log_file(parent_run_id, path, "compare")
    except Exception as exc:  # noqa: BLE001 - reported, and the run's own exit code stands
        console.print(f"[yellow]comparison not written ({type(exc).__name__}: {exc}); "
                      f"retry with `mtp-bench compare <suite.yaml>`[/]")
