"""The commit recorded under benchmark tables and on runs: "+local changes" means changed code, not written results."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mtp_bench.tracking.provenance import git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _repo(path: Path) -> None:
    (path / "results").mkdir()
    (path / "mtp_bench").mkdir()
    (path / "results" / "benchmarks.md").write_text("old\n")
    (path / "mtp_bench" / "code.py").write_text("x = 1\n")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "i"]):
        subprocess.run(["git", *args], cwd=path, check=True)


def test_written_results_are_not_local_changes_but_code_is(tmp_path: Path):
    _repo(tmp_path)
    clean = git_commit(tmp_path, short=True, mark_local=True)
    assert clean and "+local" not in clean
    (tmp_path / "results" / "benchmarks.md").write_text("a section a benchmark part just wrote\n")
    assert git_commit(tmp_path, short=True, mark_local=True) == clean
    (tmp_path / "mtp_bench" / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path, short=True, mark_local=True) == clean + " +local changes"
    (tmp_path / "mtp_bench" / "code.py").write_text("x = 1\n")
    (tmp_path / "mtp_bench" / "new.py").write_text("y = 1\n")  # a new, untracked module is a change too
    assert git_commit(tmp_path, short=True, mark_local=True) == clean + " +local changes"
    assert git_commit(tmp_path, short=True) == clean  # without mark_local: the bare commit
