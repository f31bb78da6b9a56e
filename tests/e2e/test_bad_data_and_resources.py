"""Bad data files and impossible resources: refused before any trial starts, before Ray starts and before any run
is recorded, through the real command line (exit 2, at most five lines naming file:line or the key path, no
traceback, no store). Bad suites and overrides: ``test_bad_input.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers import cuda_devices, refused, use_gsm8k, use_text


# -------------------------------------------------------------------------------------------------- data ----
def _gsm8k_dir(tmp_path: Path, train: list[str] | None = None, test: list[str] | None = None) -> Path:
    folder = tmp_path / "gsm8k"
    folder.mkdir(exist_ok=True)
    good = [json.dumps({"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"})
            for i in range(12)]
    (folder / "train.jsonl").write_text("\n".join(good if train is None else train) + "\n")
    (folder / "test.jsonl").write_text("\n".join(good[:4] if test is None else test) + "\n")
    return folder


def _rows(n: int = 10) -> list[str]:
    return [json.dumps({"question": f"q{i}", "answer": f"#### {i}"}) for i in range(n)]


BAD_GSM8K = [
    ("malformed line 8", lambda: _rows(7) + ["{not json"] + _rows(3), None, "train.jsonl:8: not valid JSON"),
    ("empty train", lambda: [""], None, "train.jsonl: no examples (the file is empty)"),
    ("empty test", lambda: _rows(), lambda: [""], "test.jsonl: no examples (the file is empty)"),
    ("missing field", lambda: _rows(2) + [json.dumps({"question": "q"})], None,
     "train.jsonl:3: missing or non-string field(s) answer"),
    ("no final answer", lambda: _rows(1) + [json.dumps({"question": "q", "answer": "42"})], None,
     "train.jsonl:2: answer has no final '#### n' line"),
    ("a list, not an object", lambda: _rows(3) + ["[1, 2]"], None, "train.jsonl:4: expected a JSON object"),
    ("too few for validation", lambda: _rows(2), None, "data.validation_size: 2 leaves no training examples"),
]


@pytest.mark.parametrize(("train", "test", "message"), [c[1:] for c in BAD_GSM8K], ids=[c[0] for c in BAD_GSM8K])
def test_bad_gsm8k_file_is_refused_before_any_trial(suite_file, tmp_path, capsys, train, test, message) -> None:
    use_gsm8k(suite_file, _gsm8k_dir(tmp_path, train(), test() if test else None))
    refused(["validate", str(suite_file)], capsys, tmp_path, message)


def test_non_utf8_data_line_names_file_and_line(suite_file, tmp_path, capsys) -> None:
    folder = _gsm8k_dir(tmp_path)
    with (folder / "train.jsonl").open("ab") as handle:
        handle.write(b'{"question": "caf\xe9", "answer": "#### 1"}\n')
    use_gsm8k(suite_file, folder)
    refused(["validate", str(suite_file)], capsys, tmp_path, f"{folder / 'train.jsonl'}:13: not UTF-8 text (byte 0xe9)")


def test_misleading_relative_path_is_shown_as_written_and_resolved(suite_file, tmp_path, capsys) -> None:
    written = "../x/etc/../nonexistent/../../etc"
    use_gsm8k(suite_file, written)
    refused(["validate", str(suite_file)], capsys, tmp_path,
            f"data.params.path: data directory '{written}' (resolved: {(tmp_path / written).resolve()}) does not "
            f"exist; {tmp_path.parent / 'x'} is missing")


def test_data_directory_problems(suite_file, tmp_path, capsys) -> None:
    folder = _gsm8k_dir(tmp_path)
    (folder / "test.jsonl").unlink()
    use_gsm8k(suite_file, folder)
    refused(["validate", str(suite_file)], capsys, tmp_path, "data.params.path: data directory", "lacks test.jsonl")
    use_gsm8k(suite_file, folder / "train.jsonl")
    refused(["validate", str(suite_file)], capsys, tmp_path, "train.jsonl' is not a directory")


BAD_TEXT = [
    ("missing file", {"train_file": "docs/none.txt"}, None, "data.params.train_file: file 'docs/none.txt' (resolved:"),
    ("empty .txt", {"train_file": "docs.txt", "test_file": "held.txt"}, (b"", b"one\n"), "docs.txt: no documents"),
    ("one document", {"train_file": "docs.txt"}, (b"only one\n", None), "need at least two documents"),
    ("latin-1 .txt", {"train_file": "docs.txt"}, (b"one\ntwo\ncaf\xe9\n", None), "docs.txt:3: not UTF-8 text"),
    ("bad .jsonl", {"train_file": "docs.jsonl"}, (b'{"text": "a"}\n{"text": 1}\n', None),
     "docs.jsonl:2: missing or non-string field(s) text"),
]


@pytest.mark.parametrize(("params", "files", "message"), [c[1:] for c in BAD_TEXT], ids=[c[0] for c in BAD_TEXT])
def test_bad_text_file_is_refused_before_any_trial(suite_file, tmp_path, capsys, params, files, message) -> None:
    for name, content in zip(("train_file", "test_file"), files or ()):
        if content is not None and name in params:
            (tmp_path / params[name]).write_bytes(content)
    use_text(suite_file, **params)
    refused(["validate", str(suite_file)], capsys, tmp_path, message)


# ------------------------------------------------------------------------------------------- resources (run) ----
BAD_RESOURCES = [
    (["resources.cpus_per_trial=1000"], "resources.cpus_per_trial: 1000 CPUs x 1 worker(s) per trial, but this "
                                        "machine has"),
    (["resources.num_workers=4096"], "resources.cpus_per_trial: 1 CPUs x 4096 worker(s)"),
    (["resources.gpus_per_trial=1000"], "resources.gpus_per_trial: 1000 GPU(s)"),
]
NO_CUDA = [
    (["resources.gpus_per_trial=1"], "resources.gpus_per_trial: 1 GPU(s) x 1 worker(s) per trial, but this machine has "
                                     "none visible"),
    (["resources.gpus_per_trial=0.5"], "resources.gpus_per_trial: 0.5 GPU(s)"),
    (["train.device=cuda"], "train.device: 'cuda', but this machine has no CUDA device"),
    (["train.device=cuda:1"], "train.device: 'cuda:1'"),
]


@pytest.mark.parametrize("ray", [False, True], ids=["no-ray", "local-ray"])
@pytest.mark.parametrize(("overrides", "message"), BAD_RESOURCES + NO_CUDA, ids=lambda v: str(v)[:40])
def test_impossible_resources_are_refused_before_ray_and_before_any_run(suite_file, tmp_path, capsys, monkeypatch,
                                                                        overrides, message, ray) -> None:
    if (overrides, message) in NO_CUDA and cuda_devices():
        pytest.skip("this machine has CUDA")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    args = ["run", str(suite_file), *overrides, "--no-compare"] + ([] if ray else ["--no-ray"])
    refused(args, capsys, tmp_path, message)
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_bad_data_in_run_leaves_nothing_behind(suite_file, tmp_path, capsys) -> None:
    use_gsm8k(suite_file, _gsm8k_dir(tmp_path, _rows(7) + ["{broken"]))
    refused(["run", str(suite_file), "--no-ray", "--no-compare"], capsys, tmp_path, "train.jsonl:8: not valid JSON")
