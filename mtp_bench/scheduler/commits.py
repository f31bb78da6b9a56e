"""Which code versions a ``--resume`` keeps: the commits recorded on the store's runs of this grid, against the
checkout that resumes them, so that a comparison never mixes code versions unseen.

``--resume`` keeps a trial's FINISHED run as it is, and continues an interrupted one from its checkpoint under the
code checked out now; either way, runs from another commit than the checkout's end up beside new ones.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from mtp_bench.scheduler.reports import FINISHED
from mtp_bench.tracking import TAG_GIT, TAG_TRIAL_ID
from mtp_bench.tracking.provenance import SOURCE, git_commit

UNKNOWN = "unknown"  # a run without a commit tag (not started from a git checkout)


def current_commit() -> str | None:
    """The commit new runs will be tagged with (as :class:`~mtp_bench.tracking.runs.Tracker` tags them)."""
    return git_commit(SOURCE) or git_commit()


def resumed_commits(runs: list[Any], trial_ids: set[str]) -> dict[str, Counter[str]]:
    """For this grid's trials (``trial_ids``), the run ``--resume`` will use (the newest finished one, else the
    newest) counted by its commit: ``{"finished": {commit: n}, "unfinished": {commit: n}}``. ``runs``: the store's
    trial runs (MLflow runs), newest first."""
    chosen: dict[str, Any] = {}
    for run in runs:
        trial_id = run.data.tags.get(TAG_TRIAL_ID)
        if trial_id not in trial_ids:
            continue
        kept = chosen.get(trial_id)
        if kept is None or (kept.info.status != FINISHED and run.info.status == FINISHED):
            chosen[trial_id] = run
    out: dict[str, Counter[str]] = {"finished": Counter(), "unfinished": Counter()}
    for run in chosen.values():
        state = "finished" if run.info.status == FINISHED else "unfinished"
        out[state][run.data.tags.get(TAG_GIT) or UNKNOWN] += 1
    return out


def mixed_commit_note(found: dict[str, Counter[str]], current: str | None) -> str | None:
    """One paragraph when the kept runs come from another commit than ``current`` (None: all from this one)."""
    current = current or UNKNOWN
    other = {state: {c: n for c, n in counts.items() if c != current} for state, counts in found.items()}
    if not any(other.values()):
        return None
    parts = [f"{n} finished at {_short(c)} (kept as they are)" for c, n in sorted(other["finished"].items())]
    parts += [f"{n} interrupted at {_short(c)} (continued from their checkpoints under this checkout's code)"
              for c, n in sorted(other["unfinished"].items())]
    same = found["finished"].get(current, 0) + found["unfinished"].get(current, 0)
    return (f"--resume: this store holds trials of this grid from another commit than this checkout "
            f"({_short(current)}): {'; '.join(parts)}" + (f"; {same} at {_short(current)}" if same else "")
            + ". Their comparison mixes code versions; run without --resume to re-run every trial at this commit.")


def _short(commit: str) -> str:
    return commit[:10] if commit != UNKNOWN else commit
