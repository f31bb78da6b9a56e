"""``mtp-bench bench --quick``, the parts that run Ray grids: the makespan of a small grid on the warm worker pool
(with the worker warm-up stage by stage) and the README's main job as a fresh process. Each runs its own Ray, so
they are a module of their own: under ``-n 2`` they run beside the rest of the bench tests, not after them. No timing
assertions: these machines are too noisy for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import first_number, sane, section, table, tables
from mtp_bench import cli
from mtp_bench.bench.sizes import QUICK


def quick_part(folder: Path, part: str) -> str:
    """``part``'s section of the report ``bench --quick --parts PART`` writes."""
    out = folder / "benchmarks.md"
    assert cli.main(["bench", "--quick", "--parts", part, "--out", str(out)]) == 0
    return section(out.read_text(), part)


@pytest.mark.ray
@pytest.mark.slow
def test_makespan_part(tmp_path: Path) -> None:
    text = quick_part(tmp_path, "makespan")
    row = table(text)[0]
    assert sane(first_number(row["makespan / ideal"])) and first_number(row["trials"]) == QUICK.makespan_trials
    stages = tables(text)[1]  # the worker warm-up, stage by stage, and its total
    assert [r["worker warm-up stage"] for r in stages][1] == "torch" and stages[-1]["worker warm-up stage"] == "**total**"
    assert first_number(stages[-1]["CPU (s)"]) == pytest.approx(sum(first_number(r["CPU (s)"]) for r in stages[:-1]),
                                                                abs=0.02)


@pytest.mark.ray
@pytest.mark.slow
def test_quickstart_part(tmp_path: Path) -> None:
    """The README's main job as a fresh process (shrunk by --quick): wall time, trials and phases in the table."""
    text = quick_part(tmp_path, "quickstart")
    row = table(text)[0]
    assert first_number(row["trials"]) == 2 and sane(first_number(row["wall (s)"]))
    assert first_number(row["until the first trial started (s)"]) <= first_number(row["wall (s)"])
    assert "Smoke test" in text
