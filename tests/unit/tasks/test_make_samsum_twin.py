"""The SAMSum CPU twin's data (``python -m mtp_bench.tasks.make_samsum_twin``): DialogSum's real dev/test files (read
from ../shared/data/dialogsum in place) become SAMSum-format files in which every speaker tag is one name, the same
in the turns and the summary, never a name the text already uses; the ``samsum`` task reads them as the twin suite
does; the output is deterministic in the seed; a bad source line is a DataError naming file:line; the generated
fallback needs no data; the twin suite validates on the files, refuses to start without them, and runs end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import REPO, recorded_trials, shared_data
from mtp_bench import cli
from mtp_bench.cli.entry import run_script
from mtp_bench.errors import DataError
from mtp_bench.tasks.make_samsum_twin import NAMES, main, make_twin
from mtp_bench.tasks.samsum import SAMSum, SAMSumParams

SUITE = str(REPO / "suites" / "samsum_tiny.yaml")
TAG = re.compile(r"#\s*person\s*(\d+)\s*#", re.IGNORECASE)


@pytest.fixture(scope="module")
def dialogsum() -> Path:
    return shared_data("dialogsum", "dialogsum.dev.jsonl", "DialogSum")


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def rename(text: str, names: dict[int, str]) -> str:
    return TAG.sub(lambda match: names.get(int(match.group(1)), "?"), text)


def samsum(folder: Path) -> SAMSum:
    return SAMSum(SAMSumParams(source="local", path=str(folder)))


def test_dialogsum_becomes_samsum_with_one_name_per_speaker(dialogsum: Path, tmp_path: Path) -> None:
    counts = make_twin(tmp_path / "twin", source=dialogsum)
    assert counts == {"train.jsonl": 500, "validation.jsonl": 250, "test.jsonl": 250}
    sources = rows_of(dialogsum / "dialogsum.dev.jsonl") + rows_of(dialogsum / "dialogsum.test.jsonl")
    written = [row for name in counts for row in rows_of(tmp_path / "twin" / name)]
    assert [row["id"] for row in written] == [f"dialogsum-{row['fname']}" for row in sources]
    for source, row in zip(sources, written, strict=True):
        assert set(row) == {"id", "dialogue", "summary"} and not TAG.search(row["dialogue"] + row["summary"])
        turns = source["dialogue"].split("\n")
        lines = row["dialogue"].replace("\r\n", "\n").split("\n")
        assert len(lines) == len(turns)
        names: dict[int, str] = {}  # speaker tag -> the name its turns got: one each, never shared
        for turn, line in zip(turns, lines, strict=True):
            speaker = line.split(": ", 1)[0]
            assert speaker in NAMES and names.setdefault(int(TAG.match(turn).group(1)), speaker) == speaker
        assert len(set(names.values())) == len(names)
        for turn, line in zip(turns, lines, strict=True):  # a tag inside a turn's text is that speaker's name too
            assert line.split(": ", 1)[1].strip() == rename(TAG.split(turn, 1)[2].lstrip(": ").strip(), names)
        summary = source.get("summary") or source["summary1"]  # the test file's first of three references
        if {int(n) for n in TAG.findall(summary)} <= set(names):  # (a tag of no speaker gets a name of its own)
            assert row["summary"] == rename(summary.strip(), names)
        original_words = set(re.findall(r"[A-Za-z]+", TAG.sub(" ", source["dialogue"] + " " + summary)))
        assert not set(names.values()) & original_words  # "Hey Jimmy" keeps Jimmy a third party's name
    first = written[0]  # dev_0, read by hand: #Person2# has trouble breathing and is sent to a specialist
    patient = first["dialogue"].split("\n")[1].split(":")[0]
    assert first["summary"] == (f"{patient} has trouble breathing. The doctor asks {patient} about it and will send "
                                f"{patient} to a pulmonary specialist.")


def test_the_samsum_task_reads_the_twin(dialogsum: Path, tmp_path: Path) -> None:
    make_twin(tmp_path / "twin", source=dialogsum)
    task = samsum(tmp_path / "twin")
    assert task.preflight() == 500
    train, test = task.records("train"), task.records("test")
    assert len(train) == 500 and len(test) == 250
    assert "\r\n" in rows_of(tmp_path / "twin" / "train.jsonl")[1]["dialogue"]
    assert not any("\r" in r["dialogue"] for r in train)  # every other chat had SAMSum's \r\n; the loader cleans
    assert all(r["references"] == [r["summary"]] for r in [*train, *test])
    written = rows_of(tmp_path / "twin" / "test.jsonl")
    assert [r["dialogue"] for r in test] == [w["dialogue"].replace("\r\n", "\n") for w in written]
    validation = samsum(tmp_path / "twin")
    validation.params.test_file = "validation.jsonl"  # SAMSum's third split, for a user who wants it as test
    assert len(validation.records("test")) == 250


def test_the_output_is_deterministic_in_the_seed(dialogsum: Path, tmp_path: Path, capsys) -> None:
    assert main(["--out", str(tmp_path / "a"), "--source", str(dialogsum)]) == 0
    assert "wrote 500 rows to train.jsonl, 250 rows to validation.jsonl, 250 rows to test.jsonl" in \
        capsys.readouterr().out
    main(["--out", str(tmp_path / "b"), "--source", str(dialogsum)])
    main(["--out", str(tmp_path / "c"), "--source", str(dialogsum), "--seed", "1"])
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()  # other names


def test_a_malformed_source_line_names_file_and_line(dialogsum: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "dialogsum"
    folder.mkdir()
    dev = (dialogsum / "dialogsum.dev.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    (folder / "dialogsum.test.jsonl").write_text(
        "\n".join((dialogsum / "dialogsum.test.jsonl").read_text(encoding="utf-8").splitlines()[:2]) + "\n")
    untagged = json.loads(dev[2])
    untagged["dialogue"] = untagged["dialogue"].replace("\n#Person2#:", "\nPerson2:", 1)
    cases = [(json.dumps(untagged), r":3: dialogue line 2 \(.Person2: .*.\) does not open with a speaker tag"),
             (dev[2][:50], r":3: not valid JSON"),
             (json.dumps({**untagged, "summary": " "}), r":3: no summary"),
             (json.dumps({"fname": "x", "summary": "s"}), r":3: missing or non-string field\(s\) dialogue")]
    for line, message in cases:
        (folder / "dialogsum.dev.jsonl").write_text("\n".join([*dev[:2], line]) + "\n")
        with pytest.raises(DataError, match=re.escape(str(folder / "dialogsum.dev.jsonl")) + message):
            make_twin(tmp_path / "out", source=folder)
    assert run_script("make_samsum_twin", main, ["--out", str(tmp_path / "out"), "--source", str(folder)]) == 2
    assert capsys.readouterr().err.startswith(f"make_samsum_twin: error: {folder / 'dialogsum.dev.jsonl'}:3: ")
    nowhere = ["--out", str(tmp_path / "out"), "--source", str(tmp_path / "nowhere")]
    assert run_script("make_samsum_twin", main, nowhere) == 2
    assert "dialogsum.dev.jsonl: no such file; make_samsum_twin reads DialogSum" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_generated_chats_need_no_data(tmp_path: Path, capsys) -> None:
    args = ["--generated", "--train", "40", "--validation", "5", "--test", "8", "--seed", "3"]
    assert main(["--out", str(tmp_path / "a"), *args]) == 0 and main(["--out", str(tmp_path / "b"), *args]) == 0
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()
    task = samsum(tmp_path / "a")
    assert task.preflight() == 40 and len(task.records("test")) == 8
    for record in task.records("train"):
        speakers = {line.split(": ", 1)[0] for line in record["dialogue"].split("\n")}
        assert len(speakers) == 2 and speakers <= set(NAMES) and all(s in record["summary"] for s in speakers)
    assert run_script("make_samsum_twin", main, ["--out", str(tmp_path / "c"), "--generated", "--train", "4"]) == 2
    assert "--generated needs --train, --validation and --test" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # sizes mean nothing for DialogSum, which is written whole
        main(["--out", str(tmp_path / "c"), "--train", "4"])


def test_the_twin_suite_validates_on_the_files_and_not_without(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MTP_BENCH_SAMSUM_TWIN_DIR", str(tmp_path / "twin"))
    assert cli.main(["validate", SUITE]) == 2
    assert f"data.params.path: data directory '{tmp_path / 'twin'}' does not exist" in capsys.readouterr().err
    make_twin(tmp_path / "twin", counts={"train": 60, "validation": 4, "test": 8})
    assert cli.main(["validate", SUITE]) == 0
    assert "'samsum_tiny', 2 methods, 6 trials" in capsys.readouterr().out


@pytest.mark.slow
def test_samsum_twin_runs_end_to_end(dialogsum: Path, tmp_path: Path, store: str, monkeypatch) -> None:
    """The twin's commands on DialogSum-derived chats: write the files, train NTP and MuToR, generate summaries,
    score ROUGE, select on validation ROUGE-L and compare. A micro model and two steps: plumbing only."""

    assert main(["--out", str(tmp_path / "twin"), "--source", str(dialogsum)]) == 0
    monkeypatch.setenv("MTP_BENCH_SAMSUM_TWIN_DIR", str(tmp_path / "twin"))
    monkeypatch.chdir(tmp_path)  # the comparison is written under ./results
    overrides = ["grid.seeds=[0]", "model.preset=micro-llama", "model.tokenizer_vocab_size=300", "train.epochs=null",
                 "train.max_steps=2", "train.batch_size=4", "evaluation.every_epochs=null", "evaluation.every_steps=2",
                 "data.validation_size=4", "data.eval_limit=4", "evaluation.max_new_tokens=12",
                 f"tracking.workdir={tmp_path / 'trials'}"]
    assert cli.main(["run", SUITE, "--no-ray", *overrides]) == 0
    client, trials = recorded_trials(store, "samsum_tiny")
    assert set(trials) == {"ntp", "mutor"}
    for run in trials.values():
        assert run.info.status == "FINISHED"
        metrics = run.data.metrics  # 500 training chats, 4 carved out for validation
        assert metrics["data/train_examples"] + metrics["data/dropped_overlength"] == 496
        for name in ("best/test/rouge/rougeL", "last/test/rouge/rouge1", "last/test/rouge/rouge2",
                     "val/rouge/rougeL"):
            assert 0.0 <= metrics[name] <= 1.0, name
    assert "train/loss/reg" in trials["mutor"].data.metrics
    rows = client.download_artifacts(trials["mutor"].info.run_id, "predictions/last/test_rouge.jsonl", str(tmp_path))
    samples = [json.loads(line) for line in Path(rows).read_text().splitlines()]
    assert len(samples) == 4 and all(len(s["references"]) == 1 and set(s["scores"]) == {"rouge1", "rouge2", "rougeL"}
                                     for s in samples)
    compare = (tmp_path / "results" / "samsum_tiny" / "compare.md").read_text()
    assert "| test/rouge/rougeL | best on validation | mutor |" in compare
