"""``run --resume`` says when the store holds this grid's trials from another commit than the checkout (naming the
commits and how many trials each), so that a comparison never mixes code versions unseen."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from helpers import make_suite, write_suite
from mtp_bench.scheduler import commits
from mtp_bench.scheduler.commits import mixed_commit_note, resumed_commits

OLD, NEW = "0123456789abcdef" * 2 + "01234567", "fedcba9876543210" * 2 + "fedcba98"


def _run(trial_id: str, status: str, commit: str | None) -> SimpleNamespace:
    tags = {"mtp_bench.trial_id": trial_id, **({"mlflow.source.git.commit": commit} if commit else {})}
    return SimpleNamespace(info=SimpleNamespace(status=status), data=SimpleNamespace(tags=tags))


def test_the_runs_resume_would_use_are_counted_by_commit():
    runs = [  # newest first, as the store returns them
        _run("a", "KILLED", NEW), _run("a", "FINISHED", OLD),  # a finished run is kept over a newer killed one
        _run("b", "KILLED", OLD),  # continued from its checkpoint under the new code
        _run("c", "FINISHED", NEW), _run("c", "FINISHED", OLD),  # the newest finished one counts
        _run("d", "FINISHED", None),  # no commit recorded
        _run("x", "FINISHED", OLD),  # not a trial of this grid
    ]
    found = resumed_commits(runs, {"a", "b", "c", "d", "e"})
    assert found == {"finished": {OLD: 1, NEW: 1, "unknown": 1}, "unfinished": {OLD: 1}}
    note = mixed_commit_note(found, NEW)
    assert note is not None
    assert f"from another commit than this checkout ({NEW[:10]})" in note
    assert f"1 finished at {OLD[:10]} (kept as they are)" in note and "1 finished at unknown" in note
    assert f"1 interrupted at {OLD[:10]} (continued from their checkpoints under this checkout's code)" in note
    assert f"1 at {NEW[:10]}" in note and "run without --resume" in note
    assert mixed_commit_note({"finished": {NEW: 3}, "unfinished": {NEW: 1}}, NEW) is None  # one version: silent
    assert mixed_commit_note({"finished": {}, "unfinished": {}}, NEW) is None  # nothing kept


def test_run_resume_names_the_other_commit_before_the_grid_starts(tmp_path: Path, gsm8k_dir: Path, store: str,
                                                                  monkeypatch: pytest.MonkeyPatch):
    from mtp_bench.scheduler import SKIPPED, run_suite
    from mtp_bench.scheduler.attempt import trial_tags
    from mtp_bench.suite import expand_grid, load_suite
    from mtp_bench.tracking import TAG_GIT, Tracker

    suite = load_suite(write_suite(tmp_path, make_suite(tmp_path, gsm8k_dir, grid={"seeds": [0, 1, 2]})))
    trials = expand_grid(suite)
    tracker = Tracker(suite.tracking.uri, suite.name)
    for trial in trials:  # every trial finished already: two at OLD, one at NEW (resume runs nothing)
        run_id = tracker.start_run(trial.label, {**trial_tags(trial), TAG_GIT: NEW if trial.seed == 2 else OLD})
        tracker.finish(run_id)
    monkeypatch.setattr(commits, "current_commit", lambda: NEW)
    out = io.StringIO()
    result = run_suite(suite, trials, use_ray=False, resume=True, console=Console(file=out, width=300))
    assert [r.status for r in result.reports] == [SKIPPED] * 3
    text = out.getvalue()
    assert f"2 finished at {OLD[:10]} (kept as they are); 1 at {NEW[:10]}" in text, text

    monkeypatch.setattr(commits, "current_commit", lambda: OLD)  # from the other side: the NEW one stands out
    out = io.StringIO()
    run_suite(suite, trials, use_ray=False, resume=True, console=Console(file=out, width=300))
    assert f"1 finished at {NEW[:10]} (kept as they are); 2 at {OLD[:10]}" in out.getvalue()
