"""Inputs that used to pass validation and fail later (or never): each is refused by ``validate`` or the command that
takes it, through the real command line, with exit 2, at most five lines naming the key path, file:line or option and
the limit, no traceback, and nothing written (the contract of ``helpers.refused``).

A 100 MB JSONL row or an oversized data file (read as a stream: the row is never held whole), a suite name longer
than folders and MLflow allow, a seed numpy refuses, an override given twice, a loop of symbolic links as the suite,
the data folder, the workdir or the store, ``steps --threshold nan``, and ``--output`` naming a file where a folder
is wanted.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest

from helpers import refused, use_gsm8k, use_text
from mtp_bench.data.files import MAX_ROW_BYTES
from mtp_bench.suite.load import MAX_NAME_CHARS, MAX_SEED


def _rows(n: int) -> list[str]:
    return [json.dumps({"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"}) for i in range(n)]


# -------------------------------------------------------------------------------------------------- data ----
def test_a_100_mb_row_is_refused_without_reading_it_whole(suite_file, tmp_path, capsys) -> None:
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    (folder / "test.jsonl").write_text("\n".join(_rows(4)) + "\n")
    with (folder / "train.jsonl").open("w") as handle:  # written in pieces: the test itself holds no 100 MB
        handle.write("\n".join(_rows(6)) + "\n" + '{"question": "')
        for _ in range(100):
            handle.write("x" * 1_000_000)
        handle.write('", "answer": "#### 1"}\n')
    use_gsm8k(suite_file, folder)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused(["validate", str(suite_file)], capsys, tmp_path,
            f"{folder / 'train.jsonl'}:7: a line longer than {MAX_ROW_BYTES:,} bytes, the cap on one row")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 50, f"peak memory grew by {grown_mb:.0f} MB: the row was read whole"


def test_a_row_at_the_cap_is_read(tmp_path, monkeypatch) -> None:
    from mtp_bench.data.files import read_jsonl

    monkeypatch.setenv("MTP_BENCH_MAX_ROW_BYTES", "200")
    row = json.dumps({"question": "q" * 100, "answer": "#### 1"})
    path = tmp_path / "rows.jsonl"
    path.write_text(row + (" " * (200 - len(row))) + "\r\n" + row + "\n")
    assert len(read_jsonl(path, ("question", "answer"))) == 2  # exactly 200 bytes and its \r\n: allowed


def test_a_data_file_over_the_size_cap_is_refused(suite_file, tmp_path, capsys, monkeypatch) -> None:
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(_rows(50)) + "\n")
    (folder / "test.jsonl").write_text("\n".join(_rows(4)) + "\n")
    monkeypatch.setenv("MTP_BENCH_MAX_DATA_FILE_BYTES", "1000")
    use_gsm8k(suite_file, folder)
    refused(["validate", str(suite_file)], capsys, tmp_path, f"{folder / 'train.jsonl'}:", "KB; a local data file may "
            "hold at most 1.0 KB (MTP_BENCH_MAX_DATA_FILE_BYTES)")


def test_a_plain_text_document_over_the_row_cap_is_refused(suite_file, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MTP_BENCH_MAX_ROW_BYTES", "1000")
    (tmp_path / "docs.txt").write_text("a short one\n" + "word " * 1000 + "\nanother\n")
    use_text(suite_file, train_file="docs.txt")
    refused(["validate", str(suite_file)], capsys, tmp_path, "docs.txt:2: a line longer than 1,000 bytes")


# ------------------------------------------------------------------------------------------------ values ----
LIMITS = [
    ([f"name={'n' * 300}"], f"name: 300 characters; a suite name may have at most {MAX_NAME_CHARS}"),
    ([f"tracking.experiment={'e' * 501}"], "tracking.experiment: 501 characters; MLflow allows at most 500"),
    (["grid.seeds=[0, 18446744073709551616]"], f"grid.seeds.1: 18446744073709551616 is outside 0..{MAX_SEED}"),
    ([f"grid.seeds=[{MAX_SEED + 1}]"], f"grid.seeds.0: {MAX_SEED + 1} is outside 0..{MAX_SEED}"),
    (["grid.seeds=[-1]"], f"grid.seeds.0: -1 is outside 0..{MAX_SEED}"),
    (["train.lr=1", "train.lr=2"], "override 'train.lr=2': train.lr is given twice (also 'train.lr=1'); give it once"),
    (["methods.ntp.label=a", "methods.0.label=b"], "methods.0.label is given twice (also 'methods.ntp.label=a')"),
]


@pytest.mark.parametrize(("overrides", "message"), LIMITS, ids=lambda v: str(v)[:30])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_values_past_what_the_trial_accepts_are_refused(suite_file, tmp_path, capsys, overrides, message,
                                                         command) -> None:
    extra = ["--no-ray", "--no-compare"] if command == "run" else []
    refused([command, str(suite_file), *overrides, *extra], capsys, tmp_path, message)


def test_the_largest_seed_and_name_are_accepted(suite_file, capsys) -> None:
    from mtp_bench import cli

    assert cli.main(["validate", str(suite_file), f"grid.seeds=[0, {MAX_SEED}]", f"name={'n' * MAX_NAME_CHARS}"]) == 0
    assert f"{MAX_SEED}" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------- symlink loops ----
def _loop(folder: Path, name: str) -> Path:
    link = folder / name
    link.symlink_to(link)
    return link


def test_a_loop_of_symbolic_links_as_the_suite(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _loop(tmp_path, "loop.yaml")
    refused(["validate", "loop.yaml"], capsys, tmp_path, "loop.yaml: a loop of symbolic links")
    refused(["run", "loop.yaml", "--no-ray"], capsys, tmp_path, "loop.yaml: a loop of symbolic links")


@pytest.mark.parametrize(("override", "message"), [
    ("tracking.workdir=loop/trials", "tracking.workdir: 'loop/trials' runs into a loop of symbolic links"),
    ("tracking.uri=sqlite:///loop/mlflow.db", "runs into a loop of symbolic links"),
])
def test_a_loop_of_symbolic_links_as_a_folder_of_the_suite(suite_file, tmp_path, capsys, override, message) -> None:
    _loop(tmp_path, "loop")
    refused(["validate", str(suite_file), override], capsys, tmp_path, message)


def test_a_loop_of_symbolic_links_as_the_data_folder(suite_file, tmp_path, capsys) -> None:
    _loop(tmp_path, "loop")
    use_gsm8k(suite_file, "loop")
    refused(["validate", str(suite_file)], capsys, tmp_path,
            "data.params.path: data directory 'loop' is a loop of symbolic links")


# ------------------------------------------------------------------------------------------ command line ----
@pytest.mark.parametrize("value", ["nan", "-inf", "inf"])
def test_steps_threshold_must_be_finite(suite_file, tmp_path, capsys, value) -> None:
    refused(["steps", str(suite_file), f"--threshold={value}"], capsys, tmp_path,
            "must be a finite number (an accuracy, e.g. 0.9)")


def test_output_naming_a_file_where_a_folder_is_wanted(suite_file, tmp_path, capsys) -> None:
    (tmp_path / "taken.md").write_text("mine\n")
    refused(["compare", str(suite_file), "--output", "taken.md"], capsys, tmp_path,
            "--output taken.md: an existing file, not a folder")
    refused(["compare", str(suite_file), "--output", "taken.md/inside"], capsys, tmp_path,
            "taken.md is a file, so nothing can be written under it")
    refused(["run", str(suite_file), "--no-ray", "--output", "taken.md"], capsys, tmp_path,
            "--output taken.md: an existing file, not a folder")  # before anything trains
    (tmp_path / "folder").mkdir()
    refused(["steps", str(suite_file), "--output", "folder"], capsys, tmp_path,
            "--output folder: an existing folder; name the file to write")
    assert (tmp_path / "taken.md").read_text() == "mine\n"
