"""The math-family CPU twin's data generator (``python -m mtp_bench.tasks.make_math_twin``): the files it writes are
read by the openmathinstruct2 and math500 tasks exactly as the twin suite reads them (problem-source filter, boxed
targets whose box math-verify accepts as the gold), from GSM8K rows or from generated word problems; bad input is a
DataError naming the file (and line); the twin suite validates on the files and refuses to start without them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import REPO, recorded_trials
from mtp_bench import cli
from mtp_bench.cli.entry import run_script
from mtp_bench.errors import DataError
from mtp_bench.scorers.math import equivalent
from mtp_bench.tasks.make_math_twin import SOURCES, boxed_solution, main, make_twin
from mtp_bench.tasks.math500 import MATH500, MATH500Params, last_boxed
from mtp_bench.tasks.openmathinstruct2 import OpenMathInstruct2, OpenMathInstruct2Params

# GSM8K-format rows (question, answer with calculator notes and "#### n"), written here: the format, not GSM8K's text
TRAIN = [
    ("Ann has 3 bags of 4 apples. How many apples does she have?", "3 * 4 = <<3*4=12>>12 apples.\n#### 12"),
    ("Bo reads 10 pages a day for 5 days. How many pages?", "10 * 5 = <<10*5=50>>50 pages.\n#### 50"),
    ("A box holds 1,000 pins and 250 are used. How many are left?", "1000 - 250 = <<1000-250=750>>750\n#### 750"),
    ("Cy splits 9 sweets among 3 friends. How many each?", "9 / 3 = <<9/3=3>>3 sweets each.\n#### 3"),
    ("Di earns $1,200 a week for 2 weeks. How much?", "1200 * 2 = <<1200*2=2400>>2400\n#### 2,400"),
    ("Ed had 7 cards and lost 2. How many are left?", "7 - 2 = <<7-2=5>>5 cards.\n#### 5"),
]
TEST = [("Fay buys 6 pens at $2 each. What does she pay?", "6 * 2 = <<6*2=12>>12 dollars.\n#### 12"),
        ("Gus walks 3 km a day for 4 days. How far?", "3 * 4 = <<3*4=12>>12 km.\n#### 12")]


def write_gsm8k(folder: Path, train=TRAIN, test=TEST) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    return folder


def read_back(out: Path, sources: list[str]) -> tuple[list[dict], list[dict]]:
    """The twin's training and test records, read by the tasks the twin suite uses."""
    task = OpenMathInstruct2(OpenMathInstruct2Params(source="local", path=str(out), problem_sources=sources,
                                                     test="math500", test_params={"source": "local",
                                                                                  "path": str(out)}))
    return task.records("train"), task.records("test")


def test_boxed_solution_drops_calculator_notes_and_boxes_the_gold() -> None:
    solution, gold = boxed_solution("Di earns 1200 * 2 = $<<1200*2=2400>>2400.\n#### 2,400")
    assert gold == "2400" and "<<" not in solution and "####" not in solution
    assert solution == "Di earns 1200 * 2 = $2400.\nThe final answer is \\boxed{2400}."


def test_gsm8k_rows_become_openmathinstruct2_and_math500_files(tmp_path: Path) -> None:
    out = tmp_path / "twin"
    counts = make_twin(out, gsm8k=write_gsm8k(tmp_path / "gsm8k"))
    assert counts == {"train_1M.jsonl": 6, "test.jsonl": 2}
    rows = [json.loads(line) for line in (out / "train_1M.jsonl").read_text().splitlines()]
    assert [r["problem_source"] for r in rows] == [*SOURCES, *SOURCES[:2]]
    assert set(rows[0]) == {"problem", "generated_solution", "expected_answer", "problem_source"}
    tests = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    assert set(tests[0]) == {"problem", "solution", "answer", "subject", "level", "unique_id"}

    train, test = read_back(out, ["math", "augmented_math"])  # the twin's filter: the 3rd and 4th of each cycle
    assert [r["problem"] for r in train] == [TRAIN[2][0], TRAIN[3][0]]
    assert [r["gold"] for r in train] == ["750", "3"]
    train_gsm, _ = read_back(out, ["gsm8k", "augmented_gsm8k"])
    assert [r["gold"] for r in train_gsm] == ["12", "50", "2400", "5"]
    assert [r["gold"] for r in test] == ["12", "12"] and test[0]["problem"] == TEST[0][0]
    for record in [*train, *train_gsm, *test]:  # every target ends in a box that math-verify reads as the gold
        assert last_boxed(record["solution"]) == record["gold"]
        assert equivalent(record["gold"], record["solution"])
    assert not equivalent("13", train_gsm[0]["solution"])
    math500 = MATH500(MATH500Params(source="local", train_source="hub", path=str(out)))
    assert math500.preflight() is None and len(math500.records("test")) == 2


def test_word_problems_need_no_data_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "twin"
    assert main([str(out), "--word-problems", "--train", "40", "--test", "8", "--seed", "3"]) == 0
    assert "wrote 40 training rows" in capsys.readouterr().out
    train, test = read_back(out, ["math", "augmented_math"])
    assert len(train) == 20 and len(test) == 8
    assert all(equivalent(r["gold"], r["solution"]) for r in [*train, *test])
    again = tmp_path / "again"
    main([str(again), "--word-problems", "--train", "40", "--test", "8", "--seed", "3"])
    assert (again / "train_1M.jsonl").read_text() == (out / "train_1M.jsonl").read_text()  # same seed, same files


def test_a_missing_source_file_is_a_data_error_naming_it(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"question": "q", "answer": "a\n#### 1"}) + "\n")
    with pytest.raises(DataError, match=rf"{folder / 'test.jsonl'}: no such file; make_math_twin reads GSM8K"):
        make_twin(tmp_path / "out", gsm8k=folder)
    assert run_script("make_math_twin", main, [str(tmp_path / "out"), "--gsm8k", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("make_math_twin: error: ") and f"{tmp_path / 'nowhere' / 'train.jsonl'}: no such file" in err
    assert not (tmp_path / "out").exists()  # nothing half-written
    with pytest.raises(DataError, match="--word-problems needs --train and --test"):
        make_twin(tmp_path / "out")


def test_a_malformed_source_row_names_file_and_line(tmp_path: Path) -> None:
    folder = write_gsm8k(tmp_path / "gsm8k", train=[*TRAIN[:2], ("No answer mark here.", "It is 4.")])
    with pytest.raises(DataError, match=rf"{folder / 'train.jsonl'}:3: .*no final '####"):
        make_twin(tmp_path / "out", gsm8k=folder)
    write_gsm8k(folder)
    (folder / "test.jsonl").write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n{\"question\": \"q\"}\n")
    with pytest.raises(DataError, match=rf"{folder / 'test.jsonl'}:2: missing or non-string field\(s\) answer"):
        make_twin(tmp_path / "out", gsm8k=folder)


def test_the_twin_suite_validates_on_generated_files_and_not_without(tmp_path: Path, monkeypatch, capsys) -> None:
    suite = str(REPO / "suites" / "math_tiny.yaml")
    monkeypatch.setenv("MTP_BENCH_MATH_TWIN_DIR", str(tmp_path / "twin"))
    assert cli.main(["validate", suite]) == 2
    assert "does not exist" in capsys.readouterr().err
    make_twin(tmp_path / "twin", n_train=200, n_test=8)  # 100 kept, 32 of them for validation
    assert cli.main(["validate", suite]) == 0
    assert "2 methods, 6 trials" in capsys.readouterr().out


@pytest.mark.slow
def test_math_twin_runs_end_to_end(tmp_path: Path, store: str, monkeypatch) -> None:
    """The twin's commands on generated word problems (no data folder needed): write the files, then train NTP and
    MuToR, generate, read the boxes with math-verify and compare. A micro model and two steps: plumbing only."""

    out = tmp_path / "twin"
    assert main([str(out), "--word-problems", "--train", "120", "--test", "8"]) == 0
    monkeypatch.setenv("MTP_BENCH_MATH_TWIN_DIR", str(out))
    monkeypatch.chdir(tmp_path)  # the comparison is written under ./results
    overrides = ["grid.seeds=[0]", "model.preset=micro-llama", "model.tokenizer_vocab_size=300", "train.max_steps=2",
                 "train.batch_size=4", "evaluation.every_steps=2", "data.validation_size=4", "data.eval_limit=4",
                 "evaluation.max_new_tokens=12", "evaluation.lm_eval.limit=4", "evaluation.lm_eval.max_gen_toks=12",
                 f"tracking.workdir={tmp_path / 'trials'}"]
    assert cli.main(["run", str(REPO / "suites" / "math_tiny.yaml"), "--no-ray", *overrides]) == 0
    client, trials = recorded_trials(store, "math_tiny")
    assert set(trials) == {"ntp", "mutor"}
    for run in trials.values():
        assert run.info.status == "FINISHED"
        metrics = run.data.metrics  # 60 of the 120 rows are math/augmented_math; 4 carved out for validation
        assert metrics["data/train_examples"] + metrics["data/dropped_overlength"] == 56
        for name in ("best/test/math/exact_match", "last/test/math/boxed_rate", "val/math/exact_match"):
            assert 0.0 <= metrics[name] <= 1.0, name
    rows = client.download_artifacts(trials["mutor"].info.run_id, "predictions/last/test_math.jsonl", str(tmp_path))
    samples = [json.loads(line) for line in Path(rows).read_text().splitlines()]
    assert len(samples) == 4 and all(s["gold"].isdigit() for s in samples)
    assert (tmp_path / "results" / "math_tiny" / "compare.md").is_file()
