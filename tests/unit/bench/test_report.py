"""``mtp-bench bench --quick``: every part runs through the real code paths and writes a well-formed
``benchmarks.md`` (context lines, tables, readings) whose numbers are sane; sections of parts not run are kept.
No timing assertions: these machines are too noisy for them."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from helpers import first_number, sane, section, table, tables
from mtp_bench import cli, registry
from mtp_bench.bench import report
from mtp_bench.bench.context import RunContext
from mtp_bench.bench.parts import DEFAULT_PARTS, parse_parts
from mtp_bench.bench.sizes import QUICK
from mtp_bench.bench.timing import Spread, spread
from mtp_bench.errors import DataError

PARTS = list(DEFAULT_PARTS)  # every default part; makespan and quickstart (Ray) are in test_ray_parts.py


def ratio(cell: str) -> float:
    """The ``(1.23×)`` of a ``count (ratio×)`` cell."""
    match = re.search(r"\((-?\d+\.\d+|nan)×\)", cell)
    assert match, f"no ratio in {cell!r}"
    return float(match.group(1))


def close(shown: float, expected: float) -> bool:
    """Two figures derived from the same measurements agree up to the 2-decimal rounding of the table."""
    return math.isclose(shown, expected, rel_tol=0.03, abs_tol=0.015)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    try:
        from mtp_bench.bench.batches import gsm8k_dir

        gsm8k_dir()
    except DataError:
        pytest.skip("GSM8K not found: set MTP_BENCH_GSM8K_DIR")
    out = tmp_path_factory.mktemp("bench") / "benchmarks.md"
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:  # the session's tokenizer cache, never the user's
        patch.setenv("MTP_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        code = cli.main(["bench", "--quick", "--parts", ",".join(PARTS), "--out", str(out)])
    assert code == 0
    assert torch.get_num_threads() == threads  # the command restores what it changed
    return out.read_text()


@pytest.mark.slow  # the module's quick_report runs a whole `bench --quick` (about a minute)
def test_report_structure(quick_report: str) -> None:
    assert quick_report.startswith(report.TITLE)
    for key in PARTS:
        body = section(quick_report, key)
        assert body.startswith("## ")
        assert "**Reading:** " in body
        for line in ("- Machine: ", "- Versions: python ", "- Load average (1/5/15 min): "):
            assert line in body, (key, line)
        assert f"- Command: `mtp-bench bench --parts {','.join(PARTS)} --quick --threads 1 --out " in body
        assert "torch " in body and "transformers " in body and "lm-eval " in body and "git " in body
        assert table(body), key


@pytest.mark.slow  # the module's quick_report runs a whole `bench --quick` (about a minute)
def test_overhead_numbers(quick_report: str) -> None:
    body = section(quick_report, "overhead")
    rows = table(body)
    assert len(rows) == 2
    for row in rows:
        assert sane(first_number(row["step time (s)"])) and sane(first_number(row["real tokens/s"]))
    assert sane(first_number(rows[1]["throughput vs reference"]))
    # both loops train the same copy of the model on the same batches: their losses agree
    gap = float(re.search(r"differ by at most (\S+) over", body).group(1))
    assert gap < 1e-4


@pytest.mark.slow  # the module's quick_report runs a whole `bench --quick` (about a minute)
def test_method_costs(quick_report: str) -> None:
    body = section(quick_report, "methods")
    sizes = tables(body)
    assert len(sizes) == 2  # the tiny model, then the realistic width
    methods = set(registry.names(registry.METHODS))
    for rows in sizes:
        by_key = {(row["method"].strip("`"), row["prompt"]): row for row in rows}
        assert len(by_key) == len(rows)
        assert {name for name, prompt in by_key if prompt == "causal"} == methods
        assert {name for name, prompt in by_key if prompt == "bidirectional"} == {"ntp", "mutor"} & methods
        memory = next(header for header in rows[0] if header.startswith("peak "))  # RSS on a CPU, allocated on a GPU
        clock = "× NTP time (CPU)" if "× NTP time (CPU)" in rows[0] else "× NTP time"
        for row in rows:
            for column in ("step time (s)", "× NTP time", clock, "positions/step (× NTP)",
                           "padded positions/step (× NTP)", "GFLOP/step (× NTP)", memory):
                assert sane(first_number(row[column])), (row["method"], column)
            # the per-position and per-FLOP costs are the time ratio over the positions and FLOPs ratios
            time_ratio = first_number(row[clock])
            assert close(first_number(row["time per position (× NTP)"]),
                         time_ratio / ratio(row["positions/step (× NTP)"])), row
            assert close(first_number(row["time per FLOP (× NTP)"]), time_ratio / ratio(row["GFLOP/step (× NTP)"])), row
        for prompt in ("causal", "bidirectional"):
            ntp, mutor = by_key[("ntp", prompt)], by_key[("mutor", prompt)]
            for column in ("× NTP time", clock, "time per position (× NTP)", "time per FLOP (× NTP)"):
                assert first_number(ntp[column]) == 1.0, (prompt, column)  # NTP is every row's baseline
            for column in ("positions/step (× NTP)", "padded positions/step (× NTP)", "GFLOP/step (× NTP)"):
                assert ratio(ntp[column]) == 1.0, (prompt, column)
                assert first_number(mutor[column]) > first_number(ntp[column]), (prompt, column)  # the registers
                assert ratio(mutor[column]) > 1.0, (prompt, column)
            # padding only adds positions
            assert first_number(ntp["padded positions/step (× NTP)"]) >= first_number(ntp["positions/step (× NTP)"])
            assert first_number(ntp["extra params (% of model)"]) == 0
            assert first_number(mutor["extra params (% of model)"]) > 0
        ntp = by_key[("ntp", "causal")]
        for name in methods - {"ntp", "mutor"}:  # head methods process the real tokens only, through extra modules
            row = by_key[(name, "causal")]
            assert row["positions/step (× NTP)"] == ntp["positions/step (× NTP)"]
            assert row["padded positions/step (× NTP)"] == ntp["padded positions/step (× NTP)"]
            assert ratio(row["GFLOP/step (× NTP)"]) > 1.0
            assert first_number(row["extra params (% of model)"]) > 0
    # the reading judges MuToR at the realistic width against its goals, with both prompts
    assert body.count("MuToR (") == 2 and "time per position " in body


@pytest.mark.slow  # the module's quick_report runs a whole `bench --quick` (about a minute)
def test_eval_speed(quick_report: str) -> None:
    body = section(quick_report, "eval")
    rows = table(body)
    assert len(rows) == 2
    tokens = [first_number(row["tokens generated"]) for row in rows]
    assert tokens[0] == tokens[1] > 0
    assert all(sane(first_number(row["tokens/s"])) for row in rows)
    same = re.search(r"(\d+)/(\d+) identical", rows[0]["completions"])
    assert same and int(same.group(2)) == QUICK.eval_prompts  # every prompt compared
    assert int(same.group(1)) == QUICK.eval_prompts  # the same model decoded greedily: the same completions


@pytest.mark.slow  # the module's quick_report runs a whole `bench --quick` (about a minute)
def test_speculative(quick_report: str) -> None:
    measured, implied = tables(section(quick_report, "speculative"))
    names = [row["drafting method"].split("`")[1] for row in measured]
    assert {"mtp_heads", "deepseek_mtp", "medusa", "mutor"} <= set(names)
    horizons = " / ".join(f"h{h}" for h in range(2, QUICK.spec_k + 2))
    for row in measured:
        assert first_number(row["mismatches"]) == 0
        assert 1.0 <= first_number(row["τ"]) <= QUICK.spec_k + 1
        assert first_number(row["drafts/step"]) == QUICK.spec_k
        assert 0.0 <= first_number(row["greedy exact match"]) <= 1.0
        for column in ("speedup per prompt", "speedup (total)", "greedy tokens/s"):
            assert sane(first_number(row[column])), (row["drafting method"], column)
        acceptance = [float(a) for a in row[f"acceptance {horizons}"].split(" / ")]
        assert len(acceptance) == QUICK.spec_k and all(0.0 <= a <= 1.0 for a in acceptance)
    # the implied table: one row per drafting method, τ carried over, implied speedup = τ / step cost
    assert [row["drafting method"].strip("`") for row in implied] == names
    assert len({row["greedy token at depth (ms)"] for row in implied}) == 1  # one greedy measurement for all
    for row, source in zip(implied, measured):
        assert row["τ (tiny model, measured)"] == source["τ"].strip("*")
        assert row["speedup measured (tiny)"] == source["speedup (total)"]
        greedy = first_number(row["greedy token at depth (ms)"])
        step = first_number(row["verifier + drafter step at depth (ms)"])
        assert sane(greedy) and sane(step)
        cost, tau = first_number(row["step cost (× greedy token)"]), first_number(row["τ (tiny model, measured)"])
        # the times are shown to 0.1 ms (the quick model's take well under a millisecond): bound the ratio
        assert (step - 0.05) / (greedy + 0.05) - 0.01 <= cost <= (step + 0.05) / max(greedy - 0.05, 1e-9) + 0.01
        assert close(first_number(row["implied speedup at depth"]), tau / cost)


@pytest.mark.slow  # the module's quick_report runs a whole `bench --quick` (about a minute)
def test_frontdoor(quick_report: str) -> None:
    rows = table(section(quick_report, "frontdoor"))
    assert [row["command"] for row in rows] == ["`mtp-bench --help`", "`mtp-bench validate suites/quickstart.yaml`"]
    for row in rows:
        assert sane(first_number(row["wall s, median [IQR]"])) and first_number(row["CPU s, median [IQR]"]) >= 0
        assert row["target"] in ("met", "**missed**")  # a time, so not asserted: these machines are too noisy
        assert int(row["modules imported"]) > 50  # counted in the fresh process: Python's own start-up alone is more
        assert row["heavy imports"] == "none"  # the parser and validate import no torch, mlflow, ray or scipy


def test_sections_of_other_parts_are_kept(tmp_path: Path) -> None:
    context = RunContext("m", "v", "mtp-bench bench", "1 / 1 / 1", load_after="1 / 1 / 1")

    def make(key: str, value: str) -> report.Section:
        return report.Section(key, key, "how", [report.Table(["a"], [[value]])], f"reading {value}", context)

    out = tmp_path / "benchmarks.md"
    report.write(out, [make("eval", "1"), make("overhead", "2")])
    report.write(out, [make("eval", "3")])  # a later run of one part replaces only that part
    text = out.read_text()
    assert text.index("bench:overhead") < text.index("bench:eval")  # report order, whatever the run order
    assert "reading 3" in section(text, "eval") and "reading 1" not in text
    assert "reading 2" in section(text, "overhead")
    # notes written by hand above the sections (the summary of goals) survive a later run of any part
    out.write_text(text.replace("<!-- bench:overhead -->", "- **Goals:** met, and why.\n\n<!-- bench:overhead -->", 1))
    report.write(out, [make("overhead", "4")])
    text = out.read_text()
    assert text.count("- **Goals:** met, and why.") == 1 and text.index("Goals") < text.index("bench:overhead")
    assert "reading 4" in section(text, "overhead") and "reading 3" in section(text, "eval")


def test_bad_parts_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--parts", "overhead,speed"]) == 2
    err = capsys.readouterr().err
    assert "unknown part(s) speed" in err and "Traceback" not in err
    assert cli.main(["bench", "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
    assert parse_parts("eval, overhead,eval,frontdoor") == ["frontdoor", "overhead", "eval"]  # report order, once


def test_spread() -> None:
    assert spread([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0, 3)
    s = spread([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.median == 3.0 and s.q1 == 2.0 and s.q3 == 4.0  # a single outlier moves neither


def test_quickstart_phases_are_read_from_the_live_view() -> None:
    from mtp_bench.bench.quickstart import events

    output = "quickstart: 2 trials (Ray)\n[7s] ntp seed=0: started on n1\n[1m41s] ntp seed=0: finished\n" \
             "[1m42s] mutor seed=0: started on n1\n[1h02m] mutor seed=0: finished\n[2m] note: not an event\n"
    assert events(output) == ([7.0, 102.0], [101.0, 3720.0])
