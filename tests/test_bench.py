"""``mtp-bench bench --quick``: every part runs through the real code paths and writes a well-formed
``benchmarks.md`` (context lines, tables, readings) whose numbers are sane; sections of parts not run are kept.
No timing assertions: these machines are too noisy for them."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from mtp_bench import cli, registry
from mtp_bench.bench import report
from mtp_bench.bench.cli import parse_parts
from mtp_bench.bench.context import RunContext
from mtp_bench.bench.sizes import QUICK
from mtp_bench.bench.timing import Spread, spread
from mtp_bench.data.tasks import DataError

PARTS = ["overhead", "methods", "eval", "speculative"]
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def section(text: str, key: str) -> str:
    match = re.search(rf"<!-- bench:{key} -->\n(.*?)<!-- /bench:{key} -->", text, re.DOTALL)
    assert match, f"no {key} section"
    return match.group(1)


def table(text: str) -> list[dict[str, str]]:
    """The first markdown table of a section as rows keyed by header."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    headers = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert set(lines[1].replace("|", "")) == {"-"}
    return [dict(zip(headers, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def first_number(cell: str) -> float:
    match = NUMBER.search(cell)
    assert match, f"no number in {cell!r}"
    return float(match.group(0).replace(",", ""))


def sane(value: float) -> bool:
    return math.isfinite(value) and value > 0


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


def test_method_costs(quick_report: str) -> None:
    rows = table(section(quick_report, "methods"))
    by_key = {(row["method"].strip("`"), row["prompt"]): row for row in rows}
    methods = set(registry.names(registry.METHODS))
    assert {name for name, prompt in by_key if prompt == "causal"} == methods
    assert {name for name, prompt in by_key if prompt == "bidirectional"} == {"ntp", "mutor"} & methods
    for row in rows:
        for column in ("step time (s)", "× NTP time", "positions/step (× NTP)", "padded positions/step (× NTP)",
                       "peak RSS (MiB)"):
            assert sane(first_number(row[column])), (row["method"], column)

    def positions(row: dict[str, str], column: str = "positions/step (× NTP)") -> tuple[float, float]:
        count, ratio = NUMBER.findall(row[column])[:2]
        return float(count), float(ratio)

    for prompt in ("causal", "bidirectional"):
        ntp, mutor = by_key[("ntp", prompt)], by_key[("mutor", prompt)]
        assert positions(mutor)[0] > positions(ntp)[0]  # registers are extra positions
        assert positions(mutor)[1] > 1.0 and positions(ntp)[1] == 1.0
        assert positions(mutor, "padded positions/step (× NTP)")[1] > 1.0
        assert positions(ntp, "padded positions/step (× NTP)")[0] >= positions(ntp)[0]  # padding only adds
        assert first_number(ntp["extra params (% of model)"]) == 0
        assert first_number(mutor["extra params (% of model)"]) > 0
    for name in methods - {"ntp", "mutor"}:  # head methods process the real tokens only, through extra modules
        row = by_key[(name, "causal")]
        assert positions(row) == positions(by_key[("ntp", "causal")])
        assert first_number(row["extra params (% of model)"]) > 0


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


def test_speculative(quick_report: str) -> None:
    rows = table(section(quick_report, "speculative"))
    names = {row["drafting method"].split("`")[1] for row in rows}
    assert {"mtp_heads", "deepseek_mtp", "medusa", "mutor"} <= names
    for row in rows:
        assert first_number(row["mismatches"]) == 0
        assert 1.0 <= first_number(row["τ"]) <= QUICK.spec_k + 1
        assert first_number(row["drafts/step"]) == QUICK.spec_k
        assert sane(first_number(row["speedup per prompt"])) and sane(first_number(row["greedy tokens/s"]))
        assert all(0.0 <= float(a) <= 1.0 for a in row["acceptance h2 / h3 / h4"].split(" / "))


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


def test_bad_parts_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--parts", "overhead,speed"]) == 2
    assert "unknown part(s) speed" in capsys.readouterr().err
    assert parse_parts("eval, overhead,eval") == ["overhead", "eval"]


def test_spread() -> None:
    assert spread([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0, 3)
    s = spread([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.median == 3.0 and s.q1 == 2.0 and s.q3 == 4.0  # a single outlier moves neither


@pytest.mark.ray
@pytest.mark.slow
def test_makespan_part(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    assert cli.main(["bench", "--quick", "--parts", "makespan", "--out", str(out)]) == 0
    row = table(section(out.read_text(), "makespan"))[0]
    assert sane(first_number(row["makespan / ideal"])) and first_number(row["trials"]) == QUICK.makespan_trials
