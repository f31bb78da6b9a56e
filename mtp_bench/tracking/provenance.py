"""Which code ran: the git commit of a checkout, recorded on every run and under every benchmark table."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2]  # the checkout (or site-packages) mtp_bench was imported from


def git_commit(cwd: str | Path | None = None, *, short: bool = False, mark_local: bool = False) -> str | None:
    """The commit checked out at ``cwd`` (None outside a repository). ``short``: abbreviated. ``mark_local``: with
    ``" +local changes"`` when tracked files differ from it or the package folders hold new files (``results/`` is
    left out: it is where runs and benchmarks write, so a benchmark's own earlier section is no change). Read-only:
    ``GIT_OPTIONAL_LOCKS=0`` keeps ``git status`` from refreshing the index."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, env=env)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", *(["--short"] if short else []), "HEAD")
    if not commit or not mark_local:
        return commit or None
    changed = (git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results") or "") + (
        git("status", "--porcelain", "--", "mtp_bench", "methods") or "")
    return commit + (" +local changes" if changed else "")
