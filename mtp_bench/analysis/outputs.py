"""The files of a comparison and where they go: ``compare.md``, ``compare.csv``, ``accuracy.png``,
``accuracy_over_steps.png`` and ``provenance.yaml`` under ``results/<suite>/`` (or ``--output``), and the same
after ``mtp-bench run`` (printed, and attached to the invocation's parent run).

Committed results are never overwritten by surprise: when git tracks files under ``results/<suite>/`` (a checkout's
published results), the default folder is ``results/local/<suite>/`` instead (ignored by git), and the run says so;
``--output results/<suite>`` replaces the committed files on purpose.

``provenance.yaml`` is what a reproduction needs, machine-readable: the suite file and overrides, the command that
re-runs the grid, the git commit(s) recorded on the compared runs and which trials ran at each, the environment the
trials recorded (packages, Python, CPU, torch's CPU capability and threads, kernel-steering variables), the headline
metric and, per method and seed, its committed value at every checkpoint (``python -m mtp_bench.analysis.reproduce``
reads it).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from mtp_bench.analysis import plots
from mtp_bench.analysis.comparison import Comparison, build_comparison
from mtp_bench.analysis.render import markdown, print_comparison, write_csv
from mtp_bench.analysis.runs import seed_key
from mtp_bench.tracking.provenance import environment, environment_from_tags, tracked_by_git
from mtp_bench.tracking.store import Store, absolute_store

PROVENANCE = "provenance.yaml"
RESULTS = Path("results")
LOCAL = RESULTS / "local"  # where runs write when results/<suite>/ is committed (ignored by git)


def output_folder(name: str, explicit: str | Path | None = None) -> tuple[Path, str | None]:
    """Where a comparison of ``name`` is written, and a note when that is not ``results/<name>/``: ``explicit``
    (``--output``) as given; else ``results/<name>/``, unless git tracks files there (committed results), then
    ``results/local/<name>/``."""
    if explicit:
        return Path(explicit), None
    folder = RESULTS / name
    if not tracked_by_git(folder):
        return folder, None
    local = LOCAL / name
    return local, (f"{folder}/ holds committed results, so this comparison went to {local}/ (git ignores it); "
                   f"`--output {folder}` replaces the committed files on purpose")


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
        "trials_by_commit": trials_by_commit(comparison),
        "store": comparison.store,
        "metric": comparison.headline,
        "values": values,
        "environment": trial_environments(comparison),
        "written_on": environment(),
    }


def trials_by_commit(comparison: Comparison) -> dict[str, dict[str, list[int | None]]]:
    """Which compared trials ran at which commit: commit -> method label -> seeds (``Comparison.by_commit``)."""
    out: dict[str, dict[str, list[int | None]]] = {}
    for commit, pairs in comparison.by_commit.items():
        for label, seed in pairs:
            out.setdefault(commit, {}).setdefault(label, []).append(seed)
    return out


def trial_environments(comparison: Comparison) -> list[dict[str, Any]]:
    """Each distinct environment the compared trials recorded (``mtp_bench.env.*`` tags), with the trials that ran
    in it (``trials``: method label -> seeds); trials from before environments were recorded are left out."""
    found: dict[str, dict[str, Any]] = {}
    for group in comparison.groups:
        for run in sorted(group.runs, key=lambda r: seed_key(r.seed)):
            env = environment_from_tags(run.tags)
            if env is None:
                continue
            key = yaml.safe_dump(env, sort_keys=True)
            entry = found.setdefault(key, {"trials": {}, **env})
            entry["trials"].setdefault(group.label, []).append(run.seed)
    return list(found.values())


class _Dumper(yaml.SafeDumper):
    """Lists of plain values on one line (``ntp: [0, 1, 2]``), everything else as blocks: a readable file."""


def _list(dumper: yaml.SafeDumper, items: list) -> yaml.Node:
    flat = all(isinstance(item, str | int | float | bool) or item is None for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flat)


_Dumper.add_representer(list, _list)


def write_outputs(comparison: Comparison, folder: Path, suite_path: str | None = None,
                  overrides: list[str] | None = None) -> list[Path]:
    """compare.md, compare.csv, the figures and provenance.yaml; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "compare.md", folder / "compare.csv", folder / PROVENANCE]
    written[0].write_text(markdown(comparison))
    write_csv(comparison, written[1])
    written[2].write_text(yaml.dump(provenance(comparison, suite_path, overrides or []), Dumper=_Dumper,
                                    sort_keys=False, width=1000))
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
                      overrides: list[str] | None = None, output: str | Path | None = None) -> list[Path]:
    """After ``mtp-bench run``: print the comparison, write it to :func:`output_folder` and attach it to the
    parent run; returns the files written. A failure here never fails the run: the trials are recorded and
    ``mtp-bench compare`` retries."""
    from mtp_bench.tracking import Tracker

    written: list[Path] = []
    try:
        comparison = compare_suite(suite)
        folder, note = output_folder(suite.name, output)
        written = write_outputs(comparison, folder, suite_path, overrides)
        print_comparison(console, comparison, written)
        if note:
            console.print(f"[yellow]{note}[/]")
        tracker = Tracker(suite.tracking.uri, suite.tracking.experiment or suite.name)
        for path in written:
            tracker.log_file(parent_run_id, path, "compare")
    except Exception as exc:  # noqa: BLE001 - reported, and the run's own exit code stands
        console.print(f"[yellow]comparison not written ({type(exc).__name__}: {exc}); "
                      f"retry with `mtp-bench compare <suite.yaml>`[/]")
    return written
