"""Does a committed result reproduce? Re-run one seed of one method of a results folder and compare its value with
the committed one.

    mtp-bench reproduce results/quickstart --method ntp --seed 0
    python -m mtp_bench.analysis.reproduce results/quickstart --method ntp --seed 0    # the same

The folder's ``provenance.yaml`` (written by ``mtp-bench compare``/``run``) names the suite, its overrides, the
headline metric and every committed per-seed value. The trial is run again through the public command line —
``mtp-bench run SUITE OVERRIDES grid.seeds=[SEED] methods=[THAT METHOD] --no-ray --no-compare`` — into a fresh
store in a temporary folder, after checking that this narrowed grid yields the very trial id of the committed grid
(same configuration, same seed). On the CPU with fixed threads a trial is deterministic, so the default tolerance is
0: any difference is a failure (exit 1); bad input exits 2.

Before running, it prints the commit it runs (the checkout's HEAD, and whether it has local changes) and this
machine's environment (packages, Python, CPU, torch's CPU capability, kernel-steering variables), and compares them
with what the provenance recorded for that trial: another commit is refused (exit 2) unless
``--allow-other-commit`` is given; environment differences are warnings (the same code can give other numbers on
another CPU or library build). After the re-run, the environment the re-run trial recorded (its threads too) is
compared the same way.

This module holds the steps; :mod:`mtp_bench.cli.reproduce` reads the command line and runs them in order.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from mtp_bench.errors import BadInput, OtherCommit, RunFailed
from mtp_bench.tracking.provenance import (
    SOURCE,
    environment_differences,
    environment_from_tags,
    git_commit,
)

PROVENANCE = "provenance.yaml"
THREAD_KEYS = ("torch_threads", "torch_interop_threads")  # set by the re-run's own process: compared after it


def recorded_commit(record: dict[str, Any], method: str, seed: int) -> tuple[str | None, list[str]]:
    """The commit the provenance names for ``method`` seed ``seed`` (None when it cannot say), and the commits
    acceptable for it (several when an older provenance lists commits without saying which trial ran at which)."""
    for commit, trials in (record.get("trials_by_commit") or {}).items():
        if seed in (trials or {}).get(method, []):
            return commit, [commit]
    commits = [str(c) for c in record.get("commits") or []]
    return (commits[0] if len(commits) == 1 else None), commits


def checkout() -> tuple[str | None, bool]:
    """The commit the re-run runs (the checkout mtp_bench is imported from; None outside git) and whether it has
    local changes."""
    head = git_commit(SOURCE)
    return head, bool(head) and (git_commit(SOURCE, mark_local=True) or "").endswith("+local changes")


CODE_PATHS = ("mtp_bench", "methods", "suites", "pyproject.toml")  # what a trial's numbers can depend on


def same_code(commit: str, head: str) -> bool:
    """Whether ``head`` has the same :data:`CODE_PATHS` as ``commit`` (False when git cannot tell, e.g. the
    recorded commit is not in this clone)."""
    try:
        done = subprocess.run(["git", "diff", "--quiet", commit, head, "--", *CODE_PATHS], cwd=SOURCE,
                              capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def check_commit(record: dict[str, Any], method: str, seed: int, allow_other: bool, head: str | None,
                 dirty: bool = False) -> list[str]:
    """Lines on the commit that runs (``head``), against the provenance's (warnings start with ``warning:``);
    raises :class:`OtherCommit` when they differ and ``allow_other`` is not set."""
    lines: list[str] = []
    expected, acceptable = recorded_commit(record, method, seed)
    if not acceptable:
        return [*lines, "warning: the provenance names no commit: cannot tell whether this code made the values"]
    named = " or ".join(c[:10] for c in ([expected] if expected else acceptable))
    lines.append(f"provenance: {method} seed {seed} ran at commit {named}")
    if head is None:
        return [*lines, "warning: not a git checkout: cannot tell whether this is that commit"]
    if head not in acceptable:
        same = next((c for c in acceptable if same_code(c, head)), None)
        if same is not None:  # a later commit that changed only results, docs or tests runs the same trials
            lines.append(f"this checkout is commit {head[:10]}: the code ({', '.join(CODE_PATHS)}) is the same as "
                         f"at {same[:10]}")
        elif not allow_other:
            raise OtherCommit(f"this checkout is commit {head[:10]}, the provenance names {named} for {method} "
                              f"seed {seed}: check it out (git checkout {(expected or acceptable[0])[:10]}) or pass "
                              "--allow-other-commit to compare anyway")
        else:
            lines.append(f"warning: running commit {head[:10]}, not {named} (--allow-other-commit): a difference "
                         "may come from the code")
    if dirty:
        lines.append("warning: the checkout has local changes: a difference may come from them")
    return lines


def recorded_environment(record: dict[str, Any], method: str, seed: int) -> dict[str, Any] | None:
    """The environment the provenance recorded for that trial (the only one, when it does not say which)."""
    entries = [e for e in record.get("environment") or [] if isinstance(e, dict)]
    for entry in entries:
        if seed in (entry.get("trials") or {}).get(method, []):
            return entry
    return entries[0] if len(entries) == 1 else None


def environment_warnings(recorded: dict[str, Any] | None, here: dict[str, Any],
                         skip: tuple[str, ...] = ("platform",)) -> list[str]:
    if recorded is None:
        return ["warning: the provenance records no environment for this trial (written before environments were "
                "recorded): cannot compare machines"]
    return [f"warning: environment differs: {line}" for line in environment_differences(recorded, here, skip)]


def load_provenance(folder: Path) -> dict[str, Any]:
    path = folder / PROVENANCE
    if not path.is_file():
        raise BadInput(f"{path}: not found (regenerate the folder with `mtp-bench compare SUITE --output {folder}`)")
    record = yaml.safe_load(path.read_text()) or {}
    for key in ("suite", "metric", "values"):
        if not record.get(key):
            raise BadInput(f"{path}: `{key}` is missing")
    return record


def narrowed_overrides(record: dict[str, Any], method: str, seed: int) -> tuple[list[str], str]:
    """Overrides that leave one method and one seed of the committed grid, and that trial's id (checked to be one
    of the committed grid's trials)."""
    from mtp_bench.suite import expand_grid, load_suite

    overrides = list(record.get("overrides") or [])
    suite = load_suite(record["suite"], overrides)
    entry = next((m for m in suite.methods if m.display_name == method), None)
    if entry is None:
        raise BadInput(f"method {method!r} is not in {record['suite']} "
                       f"(methods: {', '.join(m.display_name for m in suite.methods)})")
    committed = {(t.method.display_name, t.seed, json.dumps(t.cell, sort_keys=True)): t.trial_id
                 for t in expand_grid(suite)}
    # The narrowing replaces the run's own overrides of these keys (a key may be given once).
    replaced = ("grid.seeds=", "methods=", "baseline=")
    narrowed = [*(o for o in overrides if not o.startswith(replaced)), f"grid.seeds=[{seed}]",
                "methods=" + json.dumps([entry.model_dump(mode="json", exclude_defaults=True)]),
                f"baseline={method}"]
    trials = expand_grid(load_suite(record["suite"], narrowed))
    for trial in trials:
        if committed.get((method, seed, json.dumps(trial.cell, sort_keys=True))) != trial.trial_id:
            raise BadInput(f"narrowing the grid to {method} seed {seed} changed the trial's configuration "
                           f"({trial.label}); cannot reproduce it alone")
    if len(trials) != 1:
        raise BadInput(f"{method} seed {seed} is {len(trials)} trials (a grid of cells); reproduce needs one")
    return narrowed, trials[0].trial_id


def rerun(record: dict[str, Any], overrides: list[str], folder: Path) -> str:
    """Run the narrowed grid into a fresh store under ``folder``; returns the store URI."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    command = [sys.executable, "-m", "mtp_bench.cli", "run", record["suite"], *overrides, f"tracking.uri={uri}",
               f"tracking.workdir={folder / 'trials'}", "--no-ray", "--no-compare"]
    print("running:", " ".join(command), flush=True)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # it would override tracking.uri
    done = subprocess.run(command, check=False, env=env)
    if done.returncode != 0:
        raise RunFailed(f"the re-run failed (exit {done.returncode})")
    return uri


def check(record: dict[str, Any], method: str, seed: int, uri: str, trial_id: str, tolerance: float) -> list[str]:
    """Per committed checkpoint, the comparison of the re-run's value with the committed one; raises on a
    mismatch."""
    from mtp_bench.suite import load_suite
    from mtp_bench.tracking.store import Store

    suite = load_suite(record["suite"], list(record.get("overrides") or []))
    runs = [r for r in Store(uri, suite.tracking.experiment or suite.name).trial_runs(None)
            if r.trial_id == trial_id and r.status == "FINISHED"]
    if not runs:
        raise RunFailed(f"the re-run recorded no finished trial {trial_id}")
    committed = (record["values"].get(method) or {}).get(str(seed)) or {}
    if not committed:
        raise BadInput(f"{PROVENANCE} has no committed value for {method} seed {seed}")
    lines, mismatches = [], []
    for checkpoint, value in committed.items():
        name = f"{checkpoint}/{record['metric']}"
        got = runs[0].metrics.get(name, math.nan)
        same = abs(got - value) <= tolerance
        lines.append(f"{name}: committed {value!r}, re-run {got!r}: {'same' if same else 'DIFFERENT'}")
        if not same:
            mismatches.append(name)
    if mismatches:
        raise RunFailed("\n".join([*lines, f"{method} seed {seed} does not reproduce"]))
    return lines


def rerun_environment(record: dict[str, Any], uri: str, trial_id: str) -> dict[str, Any] | None:
    """The environment the re-run trial recorded (its tags)."""
    from mtp_bench.suite import load_suite
    from mtp_bench.tracking.store import Store

    suite = load_suite(record["suite"], list(record.get("overrides") or []))
    runs = [r for r in Store(uri, suite.tracking.experiment or suite.name).trial_runs(None) if r.trial_id == trial_id]
    return environment_from_tags(runs[0].tags) if runs else None


if __name__ == "__main__":  # `python -m mtp_bench.analysis.reproduce ...` is `mtp-bench reproduce ...`
    from mtp_bench.cli import main

    raise SystemExit(main(["reproduce", *sys.argv[1:]]))
