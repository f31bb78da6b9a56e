"""The paper's text tasks before any trial starts: ``mtp-bench validate`` reads each task's local files through its
``preflight`` hook and refuses a malformed one with exit 2 naming file:line (no store, no trial folder), and a task
configured for the hub reads nothing from the hub until a trial starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import refused, write_own_store_suite
from mtp_bench import cli
from mtp_bench.tasks.aqua_rat import AquaRat, AquaRatParams
from mtp_bench.tasks.dialogsum import DialogSum, DialogSumParams
from mtp_bench.tasks.math500 import MATH500, MATH500Params
from mtp_bench.tasks.openmathinstruct2 import OpenMathInstruct2, OpenMathInstruct2Params
from mtp_bench.tasks.samsum import SAMSum, SAMSumParams


def lines(rows: list[dict | str]) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def aqua(i: int, correct: str = "B") -> dict:
    return {"question": f"What is {i} + 1?", "options": [f"{x}){i + k}" for k, x in enumerate("ABCDE")],
            "rationale": f"{i} + 1 = {i + 1}", "correct": correct}


def dialogue(i: int, **summaries: str) -> dict:
    return {"dialogue": f"#Person1#: Hi {i}.\n#Person2#: Hello.", **(summaries or {"summary": f"They greet {i}."})}


def problem(i: int, **fields: str) -> dict:
    return {"problem": f"What is {i} + 1?", **fields}


def omi(i: int, source: str = "math") -> dict:
    return {"problem": f"What is {i} + 1?", "generated_solution": f"It is \\boxed{{{i + 1}}}.",
            "expected_answer": str(i + 1), "problem_source": source}


GOOD_MATH = [problem(i, solution=f"So \\boxed{{{i + 1}}}.", answer=str(i + 1)) for i in range(4)]

# (case id, task, scorer, params besides source/path, {file: content}, expected file:line message)
CASES = [
    ("aqua_rat wrong letter", "aqua_rat", "multiple_choice", {"train_file": "dev.json"},
     {"dev.json": lines([aqua(0), aqua(1), aqua(2, correct="F")]), "test.json": lines([aqua(9)])},
     "dev.json:3: correct answer 'F' is not one of the options' letters"),
    ("dialogsum test without summary", "dialogsum", "rouge", {"train_file": "dialogsum.dev.jsonl"},
     {"dialogsum.dev.jsonl": lines([dialogue(i) for i in range(4)]),
      "dialogsum.test.jsonl": lines([dialogue(5, summary1="A.", summary2="B."), dialogue(6, summary1=" ")])},
     "dialogsum.test.jsonl:2: no reference summary"),
    ("samsum train not json", "samsum", "rouge", {},
     {"train.jsonl": lines([dialogue(0), dialogue(1), '{"dialogue": "cut']), "test.jsonl": lines([dialogue(9)])},
     "train.jsonl:3: not valid JSON"),
    ("math500 test without answer", "math500", "math", {},
     {"test.jsonl": lines([GOOD_MATH[0], problem(7, solution="no box here")]), "train.jsonl": lines(GOOD_MATH)},
     "test.jsonl:2: no gold answer"),
    ("math500 train without box", "math500", "math", {},
     {"test.jsonl": lines(GOOD_MATH), "train.jsonl": lines(GOOD_MATH[:3] + [problem(8, solution="it is 9")])},
     "train.jsonl:4: the solution has no \\boxed{...} final answer"),
    ("openmathinstruct2 train missing field", "openmathinstruct2", "math",
     {"problem_sources": ["math"], "test": "math500", "test_params": "LOCAL"},
     {"train_1M.jsonl": lines([omi(i) for i in range(4)] + [{k: v for k, v in omi(4).items() if k != "problem"}]),
      "test.jsonl": lines(GOOD_MATH)},
     "train_1M.jsonl:5: missing or non-string field(s) problem"),
    ("openmathinstruct2 test file bad", "openmathinstruct2", "math",
     {"problem_sources": ["math"], "test": "math500", "test_params": "LOCAL"},
     {"train_1M.jsonl": lines([omi(i) for i in range(4)]), "test.jsonl": lines(GOOD_MATH[:2] + ["[1, 2]"])},
     "test.jsonl:3: expected a JSON object"),
]


@pytest.mark.parametrize(("task", "scorer", "params", "files", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_malformed_local_file_fails_validate_naming_file_and_line(tmp_path: Path, monkeypatch, capsys, task: str,
                                                                  scorer: str, params: dict, files: dict,
                                                                  message: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_text(content)
    if params.get("test_params") == "LOCAL":
        params = {**params, "test_params": {"source": "local", "path": str(folder)}}
    suite_file = write_own_store_suite(tmp_path, monkeypatch)
    suite = yaml.safe_load(suite_file.read_text())
    suite["data"] = {"task": task, "params": {"source": "local", "path": str(folder), **params},
                     "validation_size": 1}
    suite["evaluation"]["scorers"] = [{"name": scorer}]
    suite_file.write_text(yaml.safe_dump(suite, sort_keys=False))
    name, _, rest = message.partition(":")
    refused(["validate", str(suite_file)], capsys, tmp_path, f"{folder / name}:{rest}")

    # the same suite with the bad file repaired validates: the refusal was about that line, not the setup
    bad = folder / name
    bad.write_text("".join(line + "\n" for line in bad.read_text().splitlines()[: int(rest.split(":")[0]) - 1]))
    assert cli.main(["validate", str(suite_file)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("task", "params"),
    [
        (AquaRat, AquaRatParams(source="hub")),
        (DialogSum, DialogSumParams(source="hub")),
        (SAMSum, SAMSumParams()),
        (MATH500, MATH500Params()),
        (OpenMathInstruct2, OpenMathInstruct2Params(problem_sources=["gsm8k"], test="gsm8k")),
        (OpenMathInstruct2, OpenMathInstruct2Params(problem_sources=["math"])),
    ],
)
def test_preflight_of_a_hub_task_reads_nothing_from_the_hub(monkeypatch, task, params) -> None:
    import datasets

    def no_hub(*args, **kwargs):
        raise AssertionError("preflight must not reach the hub")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    assert task(params).preflight() is None
