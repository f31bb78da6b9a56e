"""The paper's text tasks: real AQuA-RAT and DialogSum records from ../shared/data, hub loaders driven by a fake
``datasets.load_dataset`` (streaming asked for, filters and caps applied while reading), and bad input: malformed
local files named by file:line, unknown problem sources and splits listing the valid ones, an unreachable hub
suggesting the local path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from helpers import shared_data
from mtp_bench.data.pipeline import format_examples
from mtp_bench.errors import DataError
from mtp_bench.tasks.aqua_rat import AquaRat, AquaRatParams
from mtp_bench.tasks.dialogsum import DialogSum, DialogSumParams
from mtp_bench.tasks.math500 import MATH500, MATH500Params, last_boxed
from mtp_bench.tasks.openmathinstruct2 import OpenMathInstruct2, OpenMathInstruct2Params
from mtp_bench.tasks.samsum import SAMSum, SAMSumParams


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


class FakeHub:
    """Replaces ``datasets.load_dataset``: serves rows per (id, config, split) lazily and counts how many were read."""

    def __init__(self, tables: dict[tuple[str, str | None, str], list[dict]]):
        self.tables, self.read, self.calls = tables, 0, []

    def __call__(self, hub_id, config=None, split=None, streaming=False):
        self.calls.append((hub_id, config, split, streaming))
        for row in self.tables[(hub_id, config, split)]:
            self.read += 1
            yield row


@pytest.fixture
def fake_hub(monkeypatch):
    import datasets

    def install(tables):
        hub = FakeHub(tables)
        monkeypatch.setattr(datasets, "load_dataset", hub)
        return hub

    return install


# ----------------------------------------------------------------------------------------------------- AQuA-RAT ----
def test_aqua_real_records_and_format() -> None:
    folder = shared_data("aqua", "dev.json")
    task = AquaRat(AquaRatParams(path=str(folder), train_file="dev.json"))
    train, test = task.records("train"), task.records("test")
    assert len(train) == 254 and len(test) == 254
    assert {r["gold"] for r in train + test} <= set("ABCDE")
    ship = train[1]  # dev.json line 2, as written in the file
    assert ship["options"] == "A) 100 m B) 150 m C) 200 m D) 250 m E) 300 m" and ship["gold"] == "D"
    (formatted,) = format_examples([ship], task.prompt_template, task.answer_template, "aqua")
    assert formatted.prompt.startswith("Question: A ship is leaving a port.")
    assert formatted.prompt.endswith("\nOptions: A) 100 m B) 150 m C) 200 m D) 250 m E) 300 m\n\nAnswer:")
    assert formatted.answer.startswith(" Let the length of the ship") and formatted.answer.endswith("Answer D\n#### D")


def test_aqua_local_copy_without_train_split_says_what_to_do() -> None:
    folder = shared_data("aqua", "dev.json")
    with pytest.raises(ValidationError, match=r"lacks train\.json.*train_file: dev\.json"):
        AquaRatParams(path=str(folder))


def test_local_file_check_names_the_missing_defaults_and_the_dev_advice(tmp_path: Path) -> None:
    """A ``train_file`` that fails its own check is looked for under its default name (not as ""), so the path error
    still names both missing files and, for tasks that ship a dev split, how to train on it; SAMSum has no advice."""
    with pytest.raises(ValidationError) as caught:
        DialogSumParams(path=str(tmp_path), train_file=["not", "a", "name"])
    assert "lacks dialogsum.train.jsonl, dialogsum.test.jsonl; a copy without a training split can train on its " \
           "dev split: train_file: dialogsum.dev.jsonl" in str(caught.value)
    with pytest.raises(ValidationError, match=r"lacks train\.jsonl, test\.jsonl \["):
        SAMSumParams(source="local", path=str(tmp_path))
    assert SAMSumParams(path=str(tmp_path / "absent")).path is not None  # hub source: the folder is not checked


def test_aqua_malformed_files_name_file_and_line(tmp_path: Path) -> None:
    good = {"question": "q", "options": ["A)1", "B)2", "C)3", "D)4", "E)5"], "rationale": "r", "correct": "B"}
    write_jsonl(tmp_path / "test.json", [good])
    write_jsonl(tmp_path / "train.json", [good, "{not json"])
    task = AquaRat(AquaRatParams(path=str(tmp_path)))
    with pytest.raises(DataError, match=r"train\.json:2: not valid JSON"):
        task.records("train")
    write_jsonl(tmp_path / "train.json", [good, good, {**good, "correct": "F"}])
    with pytest.raises(DataError, match=r"train\.json:3: correct answer 'F' is not one of"):
        task.records("train")
    write_jsonl(tmp_path / "train.json", [{**good, "options": ["1", "2"]}])
    with pytest.raises(DataError, match=r"train\.json:1: an option does not start with a letter"):
        task.records("train")
    write_jsonl(tmp_path / "train.json", [{"question": "q", "options": good["options"], "correct": "A"}])
    with pytest.raises(DataError, match=r"train\.json:1: missing or non-string field\(s\) rationale"):
        task.records("train")


def test_aqua_hub_streams_the_chosen_splits(fake_hub) -> None:
    row = {"question": "q", "options": ["A)1", "B)2", "C)3", "D)4", "E)5"], "rationale": "r", "correct": "C"}
    hub = fake_hub({("deepmind/aqua_rat", "raw", "validation"): [row], ("deepmind/aqua_rat", "raw", "test"): [row]})
    task = AquaRat(AquaRatParams(source="hub", hub_train_split="validation"))
    assert task.records("train")[0]["gold"] == "C" and len(task.records("test")) == 1
    assert [call[2:] for call in hub.calls] == [("validation", True), ("test", True)]


def test_aqua_hub_skips_malformed_rows_and_says_how_many(fake_hub, caplog) -> None:
    good = {"question": "q", "options": ["A)1", "B)2", "C)3", "D)4", "E)5"], "rationale": "r", "correct": "C"}
    fake_hub({("deepmind/aqua_rat", "raw", "train"): [good, {**good, "correct": "Z"}, good]})
    with caplog.at_level("WARNING", logger="mtp_bench.tasks.aqua_rat"):
        rows = AquaRat(AquaRatParams(source="hub")).records("train")
    assert len(rows) == 2
    assert "skipped 1 malformed row(s), first: row 1: correct answer 'Z'" in caplog.text


# ----------------------------------------------------------------------------------------------------- DialogSum ----
def test_dialogsum_real_records_keep_every_reference() -> None:
    folder = shared_data("dialogsum", "dialogsum.test.jsonl")
    task = DialogSum(DialogSumParams(path=str(folder), train_file="dialogsum.dev.jsonl"))
    train, test = task.records("train"), task.records("test")
    assert len(train) == 500 and all(len(r["references"]) == 1 for r in train)
    assert len(test) == 500 and all(len(r["references"]) == 3 for r in test)
    first = json.loads((folder / "dialogsum.test.jsonl").read_text().splitlines()[0])
    assert test[0]["references"] == [first["summary1"], first["summary2"], first["summary3"]]
    assert test[0]["summary"] == first["summary1"] and test[0]["dialogue"] == first["dialogue"]
    (formatted,) = format_examples(test[:1], task.prompt_template, task.answer_template, "dialogsum")
    assert formatted.prompt.endswith("\n\nSummary:") and formatted.answer == " " + first["summary1"]


def test_dialogsum_malformed_file_names_file_and_line(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "dialogsum.train.jsonl", [{"dialogue": "#Person1#: hi", "summary": "s"}])
    write_jsonl(tmp_path / "dialogsum.test.jsonl",
                [{"dialogue": "d", "summary1": "s"}, {"dialogue": "d2", "topic1": "no summary here"}])
    task = DialogSum(DialogSumParams(path=str(tmp_path)))
    assert task.records("train")[0]["summary"] == "s"
    with pytest.raises(DataError, match=r"dialogsum\.test\.jsonl:2: no reference summary"):
        task.records("test")


def test_dialogsum_hub_test_rows_merge_into_multiple_references(fake_hub) -> None:
    rows = [{"id": f"test_0_{k}", "dialogue": "D0", "summary": f"s{k}"} for k in (1, 2, 3)]
    rows += [{"id": "test_1_1", "dialogue": "D1", "summary": "t1"}]
    fake_hub({("knkarthick/dialogsum", None, "test"): rows})
    test = DialogSum(DialogSumParams(source="hub")).records("test")
    assert [(r["dialogue"], r["references"]) for r in test] == [("D0", ["s1", "s2", "s3"]), ("D1", ["t1"])]


# -------------------------------------------------------------------------------------------------------- SAMSum ----
def test_samsum_local_and_hub(tmp_path: Path, fake_hub) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"dialogue": "Amanda: hi\r\nTom: hey", "summary": "They greet."},
                                           {"dialogue": "", "summary": "empty dialogue, left out"}])
    write_jsonl(tmp_path / "test.jsonl", [{"dialogue": "A: x", "summary": "A says x."}])
    local = SAMSum(SAMSumParams(source="local", path=str(tmp_path)))
    assert local.records("train") == [{"dialogue": "Amanda: hi\nTom: hey", "summary": "They greet.",
                                       "references": ["They greet."]}]
    write_jsonl(tmp_path / "test.jsonl", [{"dialogue": "A: x"}])
    with pytest.raises(DataError, match=r"test\.jsonl:1: missing or non-string field\(s\) summary"):
        local.records("test")
    fake_hub({("Samsung/samsum", None, "test"): [{"id": "1", "dialogue": "B: y", "summary": "B says y."}]})
    assert SAMSum(SAMSumParams()).records("test")[0]["references"] == ["B says y."]


# ------------------------------------------------------------------------ own validation split, official prompt ----
def dialogsum_folder(tmp_path: Path) -> Path:
    """DialogSum's real dev and test files beside a small training file of other dialogues."""
    source = shared_data("dialogsum", "dialogsum.dev.jsonl")
    for name in ("dialogsum.dev.jsonl", "dialogsum.test.jsonl"):
        (tmp_path / name).write_text((source / name).read_text())
    write_jsonl(tmp_path / "dialogsum.train.jsonl",
                [{"dialogue": f"#Person1#: line {i}\n#Person2#: ok", "summary": f"Talk {i}."} for i in range(40)])
    return tmp_path


def test_own_validation_split_is_the_datasets_and_nothing_is_carved(tmp_path: Path) -> None:
    from mtp_bench.data.pipeline import build_splits

    folder = dialogsum_folder(tmp_path)
    carved = build_splits(DialogSum(DialogSumParams(path=str(folder))), validation_size=8)
    own = build_splits(DialogSum(DialogSumParams(path=str(folder), validation="own")))
    assert len(carved.train) == 32 and len(carved.validation) == 8  # today's behaviour, by default
    assert len(own.train) == 40 and len(own.validation) == 500 and len(own.test) == 500
    first = json.loads((folder / "dialogsum.dev.jsonl").read_text().splitlines()[0])
    assert own.validation[0].record["dialogue"] == first["dialogue"].strip()
    assert own.validation[0].answer == " " + first["summary"].strip()
    with pytest.raises(DataError, match=r"data\.validation_size is 8, but the task uses its own validation split"):
        build_splits(DialogSum(DialogSumParams(path=str(folder), validation="own")), validation_size=8)
    assert DialogSum(DialogSumParams(path=str(folder), validation="own")).preflight() == 40
    (folder / "dialogsum.dev.jsonl").write_text('{"dialogue": "d"}\n')
    with pytest.raises(DataError, match=r"dialogsum\.dev\.jsonl:1: no reference summary"):
        DialogSum(DialogSumParams(path=str(folder), validation="own")).preflight()


def test_own_validation_is_refused_where_it_would_be_trained_on_or_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="validation: own reads validation_file 'dev.json', which is also the "
                                              "train_file"):
        AquaRatParams(path=str(shared_data("aqua", "dev.json")), train_file="dev.json", validation="own")
    with pytest.raises(ValidationError, match="also hub_train_split"):
        SAMSumParams(hub_train_split="validation", validation="own")
    write_jsonl(tmp_path / "train.jsonl", [{"dialogue": "A: x", "summary": "s"}])
    write_jsonl(tmp_path / "test.jsonl", [{"dialogue": "A: x", "summary": "s"}])
    with pytest.raises(ValidationError, match=r"lacks validation\.jsonl"):
        SAMSumParams(source="local", path=str(tmp_path), validation="own")
    assert SAMSumParams(source="local", path=str(tmp_path)).validation == "carve"  # no file needed by default


def test_own_validation_streams_the_hubs_validation_split(fake_hub) -> None:
    question = {"question": "q", "options": ["A)1", "B)2", "C)3", "D)4", "E)5"], "rationale": "r", "correct": "C"}
    hub = fake_hub({("deepmind/aqua_rat", "raw", "validation"): [question, question],
                    ("Samsung/samsum", None, "validation"): [{"id": "v", "dialogue": "A: y", "summary": "A: y."}],
                    ("knkarthick/dialogsum", None, "validation"): [{"dialogue": "D", "summary": "S"}]})
    assert len(AquaRat(AquaRatParams(source="hub", validation="own")).validation_records()) == 2
    assert SAMSum(SAMSumParams(validation="own")).validation_records()[0]["summary"] == "A: y."
    assert DialogSum(DialogSumParams(source="hub", validation="own")).validation_records()[0]["references"] == ["S"]
    assert [call[2] for call in hub.calls] == ["validation"] * 3
    assert AquaRat(AquaRatParams(source="hub")).validation_records() is None and len(hub.calls) == 3


def test_the_official_summarisation_prompt_is_the_mutor_codes(tmp_path: Path) -> None:
    record = {"dialogue": "Amanda: hi\nTom: hey", "summary": "They greet.", "references": ["They greet."]}
    folder = dialogsum_folder(tmp_path)
    for task in (DialogSum(DialogSumParams(path=str(folder), prompt="official")), SAMSum(SAMSumParams(prompt="official"))):
        (example,) = format_examples([record], task.prompt_template, task.answer_template, task.name)
        assert example.prompt == "Dialogue:\nAmanda: hi\nTom: hey\n\nSummary:" and example.answer == " They greet."
    (ours,) = format_examples([record], SAMSum(SAMSumParams()).prompt_template, "{summary}", "samsum")
    assert ours.prompt == "Summarize the following dialogue.\n\nAmanda: hi\nTom: hey\n\nSummary:"  # the default


# ------------------------------------------------------------------------------------------------------- MATH500 ----
def test_math500_local_test_and_training_files(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "test.jsonl", [{"problem": "1+1?", "answer": "2"},
                                          {"problem": "half?", "solution": r"It is $\boxed{\frac{1}{2}}$."}])
    write_jsonl(tmp_path / "train.jsonl", [{"problem": "p", "solution": r"so \boxed{x^{2}}"}, {"problem": "q",
                                            "solution": "no box"}])
    task = MATH500(MATH500Params(source="local", path=str(tmp_path)))
    assert [r["gold"] for r in task.records("test")] == ["2", r"\frac{1}{2}"]
    with pytest.raises(DataError, match=r"train\.jsonl:2: the solution has no \\boxed"):
        task.records("train")
    with pytest.raises(ValidationError, match="lacks nope.jsonl"):
        MATH500Params(source="local", path=str(tmp_path), train_file="train.jsonl", test_file="nope.jsonl")


def test_math500_hub_reads_test_and_every_math_subject(fake_hub) -> None:
    tables = {("HuggingFaceH4/MATH-500", None, "test"): [{"problem": "p", "solution": "s", "answer": "3"}]}
    for subject in ("algebra", "geometry"):
        tables[("EleutherAI/hendrycks_math", subject, "train")] = [{"problem": subject, "solution": r"\boxed{1}"}]
    hub = fake_hub(tables)
    task = MATH500(MATH500Params(train_subjects=["algebra", "geometry"]))
    assert task.records("test")[0]["gold"] == "3"
    assert [r["problem"] for r in task.records("train")] == ["algebra", "geometry"]
    assert all(streaming for *_, streaming in hub.calls)


def test_last_boxed_balances_braces() -> None:
    assert last_boxed(r"\boxed{1} then \boxed{\frac{a}{b^{2}}}.") == r"\frac{a}{b^{2}}"
    assert last_boxed(r"\fbox{7}") == "7" and last_boxed("none") is None and last_boxed(r"\boxed{1") is None


# -------------------------------------------------------------------------------------------- OpenMathInstruct-2 ----
def omi_rows(n: int) -> list[dict]:
    sources = ["gsm8k", "math", "augmented_gsm8k", "augmented_math"]
    return [{"problem": f"p{i}", "generated_solution": f"work {i}" + (rf" \boxed{{{i}}}" if i % 2 else ""),
             "expected_answer": str(i), "problem_source": sources[i % 4]} for i in range(n)]


def test_openmathinstruct2_filters_caps_and_boxes(fake_hub) -> None:
    hub = fake_hub({("nvidia/OpenMathInstruct-2", None, "train_2M"): omi_rows(1000)})
    params = dict(split="train_2M", problem_sources=["gsm8k", "augmented_gsm8k"])
    rows = OpenMathInstruct2(OpenMathInstruct2Params(**params, max_examples=5)).records("train")
    assert [r["problem"] for r in rows] == ["p0", "p2", "p4", "p6", "p8"]
    assert hub.read == 9  # the stream stops once the cap is met
    assert hub.calls[0] == ("nvidia/OpenMathInstruct-2", None, "train_2M", True)
    assert rows[0]["solution"] == "work 0\nThe final answer is \\boxed{0}." and rows[0]["gold"] == "0"
    every = OpenMathInstruct2(OpenMathInstruct2Params(**params)).records("train")
    assert len(every) == 500 and {r["problem_source"] for r in every} == {"gsm8k", "augmented_gsm8k"}
    assert all(last_boxed(r["solution"]) == r["gold"] for r in every)


def test_openmathinstruct2_seeded_subsample_is_reproducible(fake_hub) -> None:
    fake_hub({("nvidia/OpenMathInstruct-2", None, "train_1M"): omi_rows(400)})

    def sample(seed: int) -> list[str]:
        params = OpenMathInstruct2Params(problem_sources=["math"], max_examples=10, subsample_seed=seed)
        return [r["problem"] for r in OpenMathInstruct2(params).records("train")]

    first, again, other = sample(0), sample(0), sample(1)
    assert first == again and first != other and len(first) == 10
    assert first == sorted(first, key=lambda p: int(p[1:]))  # stream order kept
    assert max(int(p[1:]) for p in first) > 100  # drawn from the whole stream, not its head


def test_openmathinstruct2_sample_is_the_official_codes_shuffle_and_head(fake_hub) -> None:
    """``sample_size`` keeps what the MuToR code keeps for 1M-MATH: the filtered rows, shuffled by the datasets
    library with the seed, then the first N (checked against the library itself, not a copy of its rule)."""
    import datasets

    rows = omi_rows(400)
    fake_hub({("nvidia/OpenMathInstruct-2", None, "train_1M"): rows})
    params = OpenMathInstruct2Params(problem_sources=["math", "augmented_math"], sample_size=50, sample_seed=0)
    ours = [r["problem"] for r in OpenMathInstruct2(params).records("train")]
    kept = datasets.Dataset.from_list([r for r in rows if r["problem_source"] in {"math", "augmented_math"}])
    official = kept.shuffle(seed=0).select(range(50))["problem"]
    assert ours == official and len(set(ours)) == 50
    other = OpenMathInstruct2(params.model_copy(update={"sample_seed": 1})).records("train")
    assert [r["problem"] for r in other] != ours
    whole = OpenMathInstruct2(params.model_copy(update={"sample_size": 1000})).records("train")
    assert len(whole) == 200  # fewer rows than asked: all of them, shuffled


def test_openmathinstruct2_extra_rows_come_from_the_larger_split_and_never_repeat(fake_hub) -> None:
    """Table 3's mix: every 1M row, plus a seeded sample of 2M rows that 1M lacks, sized as a count or a fraction."""
    small, large = omi_rows(40), omi_rows(100)  # rows 0-39 of the large split are the small split's rows
    fake_hub({("nvidia/OpenMathInstruct-2", None, "train_1M"): small,
              ("nvidia/OpenMathInstruct-2", None, "train_2M"): large})
    base = dict(split="train_1M", problem_sources=["gsm8k", "augmented_gsm8k"])
    rows = OpenMathInstruct2(OpenMathInstruct2Params(**base, extra={"split": "train_2M", "size": 0.4})).records("train")
    chosen = [r["problem"] for r in rows]
    assert chosen[:20] == [f"p{i}" for i in range(0, 40, 2)]  # the whole 1M-GSM first, in stream order
    added = chosen[20:]
    assert len(added) == 8 and len(set(chosen)) == 28  # 0.4 x 20 extra rows, no row twice
    assert all(40 <= int(p[1:]) < 100 and int(p[1:]) % 2 == 0 for p in added)  # 2M-only rows of the GSM sources
    again = OpenMathInstruct2(OpenMathInstruct2Params(**base, extra={"split": "train_2M", "size": 8})).records("train")
    assert [r["problem"] for r in again] == chosen  # a count and a fraction give the same rows
    with pytest.raises(DataError, match=r"extra asks for 31 rows of train_2M beyond the 20 chosen, but it has only 30"):
        OpenMathInstruct2(OpenMathInstruct2Params(**base, extra={"split": "train_2M", "size": 31})).records("train")


def test_openmathinstruct2_sampling_knobs_are_checked() -> None:
    with pytest.raises(ValidationError, match="set at most one of max_examples and sample_size"):
        OpenMathInstruct2Params(problem_sources=["math"], max_examples=5, sample_size=5)
    with pytest.raises(ValidationError, match="extra.split 'train_1M' is the chosen split itself"):
        OpenMathInstruct2Params(problem_sources=["math"], extra={"split": "train_1M", "size": 5})
    with pytest.raises(ValidationError, match=r"extra\.size\n.*greater than 0"):
        OpenMathInstruct2Params(problem_sources=["math"], extra={"split": "train_2M", "size": 0})
    with pytest.raises(ValidationError, match=r"extra\.sise\n.*Extra inputs are not permitted"):
        OpenMathInstruct2Params(problem_sources=["math"], extra={"split": "train_2M", "sise": 5})


def test_openmathinstruct2_local_extra_split_must_be_there(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train_1M.jsonl", omi_rows(8))
    with pytest.raises(ValidationError, match=r"lacks train_2M\.jsonl"):
        OpenMathInstruct2Params(source="local", path=str(tmp_path), problem_sources=["gsm8k"],
                                extra={"split": "train_2M", "size": 1})
    write_jsonl(tmp_path / "train_2M.jsonl", omi_rows(16))
    params = OpenMathInstruct2Params(source="local", path=str(tmp_path), problem_sources=["gsm8k"],
                                     extra={"split": "train_2M", "size": 2})
    assert [r["problem"] for r in OpenMathInstruct2(params).records("train")][:2] == ["p0", "p4"]
    assert {r["problem"] for r in OpenMathInstruct2(params).records("train")[2:]} == {"p8", "p12"}


def test_openmathinstruct2_local_file_and_gsm8k_test(tmp_path: Path) -> None:
    gsm8k = shared_data("gsm8k", "test.jsonl", "GSM8K")
    write_jsonl(tmp_path / "train_1M.jsonl", omi_rows(8) + ['{"problem": "p", "generated_solution": "s"}'])
    params = OpenMathInstruct2Params(source="local", path=str(tmp_path), problem_sources=["math"], test="gsm8k",
                                     test_params={"source": "local", "path": str(gsm8k)})
    task = OpenMathInstruct2(params)
    with pytest.raises(DataError, match=r"train_1M\.jsonl:9: missing or non-string field\(s\) expected_answer"):
        task.records("train")
    test = task.records("test")
    assert len(test) == 1319 and set(test[0]) == {"problem", "solution", "gold"} and test[0]["gold"] == "18"


def test_openmathinstruct2_unknown_source_or_split_lists_the_valid_ones() -> None:
    with pytest.raises(ValidationError) as info:
        OpenMathInstruct2Params(problem_sources=["gsm8k", "gsm_hard"])
    assert "'gsm8k', 'augmented_gsm8k', 'math' or 'augmented_math'" in str(info.value)
    with pytest.raises(ValidationError) as info:
        OpenMathInstruct2Params(problem_sources=["math"], split="train_3M")
    assert "'train_1M', 'train_2M', 'train_5M' or 'train'" in str(info.value)
    with pytest.raises(ValidationError, match="problem_sources"):
        OpenMathInstruct2Params()
    with pytest.raises(ValidationError, match=r"test_params\n.*path: .*does not exist"):
        OpenMathInstruct2Params(problem_sources=["math"], test="gsm8k", test_params={"path": "/no/such/dir"})


# ------------------------------------------------------------------------------------------ unreachable hub ----
@pytest.mark.parametrize(
    ("task", "params"),
    [
        (AquaRat, AquaRatParams(source="hub")),
        (DialogSum, DialogSumParams(source="hub")),
        (SAMSum, SAMSumParams()),
        (MATH500, MATH500Params()),
        (OpenMathInstruct2, OpenMathInstruct2Params(problem_sources=["math"])),
    ],
)
@pytest.mark.parametrize("when", ["open", "read"])
def test_unreachable_hub_says_so_and_suggests_local_path(monkeypatch, task, params, when: str) -> None:
    import datasets

    def offline(*args, **kwargs):
        if when == "open":
            raise ConnectionError("Couldn't reach 'x' on the Hub (LocalEntryNotFoundError)")

        def rows():
            raise ConnectionError("connection reset while streaming")
            yield {}

        return rows()

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as info:
        task(params).records("train")
    message = str(info.value)
    assert "could not be read (ConnectionError" in message and "source: local with path:" in message


def test_task_modules_import_no_torch() -> None:
    code = ("import sys; import mtp_bench.tasks.aqua_rat, mtp_bench.tasks.dialogsum, mtp_bench.tasks.samsum, "
            "mtp_bench.tasks.math500, mtp_bench.tasks.openmathinstruct2, mtp_bench.scorers.math_params, "
            "mtp_bench.scorers.multiple_choice_params, mtp_bench.scorers.rouge_params; "
            "assert 'torch' not in sys.modules and 'datasets' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------------- preflight ----
def test_preflight_reads_local_files_and_skips_the_hub(tmp_path: Path, fake_hub) -> None:
    folder = shared_data("aqua", "dev.json")
    assert AquaRat(AquaRatParams(path=str(folder), train_file="dev.json")).preflight() == 254
    dialogsum = shared_data("dialogsum", "dialogsum.dev.jsonl")
    assert DialogSum(DialogSumParams(path=str(dialogsum), train_file="dialogsum.dev.jsonl")).preflight() == 500
    hub = fake_hub({})
    assert AquaRat(AquaRatParams(source="hub")).preflight() is None and hub.calls == []
    write_jsonl(tmp_path / "train_1M.jsonl", omi_rows(8))
    local = OpenMathInstruct2Params(source="local", path=str(tmp_path), problem_sources=["augmented_math"],
                                    test="math500", test_params={"source": "hub"})
    assert OpenMathInstruct2(local).preflight() == 2 and hub.calls == []
    (tmp_path / "train_1M.jsonl").write_text("")
    with pytest.raises(DataError, match=r"train_1M\.jsonl \(problem_source in augmented_math\): no examples"):
        OpenMathInstruct2(local).preflight()
