"""Data: GSM8K loading and its errors, splits, tokenization, collation and the step sampler."""

from __future__ import annotations

import json

import pytest

from helpers import make_batch
from mtp_bench.api import IGNORE_INDEX
from mtp_bench.data.pipeline import StepSampler, build_splits
from mtp_bench.errors import DataError
from mtp_bench.tasks.gsm8k import GSM8K, GSM8KParams, gold_answer
from mtp_bench.tasks.text import PlainText, PlainTextParams


def test_gsm8k_local_copy_loads_in_the_papers_format(gsm8k_dir) -> None:
    task = GSM8K(GSM8KParams(source="local", path=str(gsm8k_dir)))
    splits = build_splits(task, validation_size=100)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (7373, 100, 1319)
    first = build_splits(task).train[0]
    assert first.prompt.startswith("Question: Natalia sold clips") and first.prompt.endswith("\n\nAnswer:")
    assert first.answer.startswith(" Natalia sold 48/2") and first.answer.endswith("#### 72")
    assert first.record["gold"] == "72"
    again = build_splits(task, validation_size=100)
    assert [e.prompt for e in again.validation] == [e.prompt for e in splits.validation]  # fixed carve-out


def test_broken_jsonl_line_names_file_and_line(tmp_path) -> None:
    good = {"question": "q?", "answer": "a\n#### 3"}
    (tmp_path / "test.jsonl").write_text(json.dumps(good) + "\n")
    (tmp_path / "train.jsonl").write_text(json.dumps(good) + "\n\n{not json\n")
    task = GSM8K(GSM8KParams(source="local", path=str(tmp_path)))
    with pytest.raises(DataError, match=r"train\.jsonl:3: not valid JSON"):
        task.records("train")
    (tmp_path / "train.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({"question": "q", "answer": "7"}))
    with pytest.raises(DataError, match=r"train\.jsonl:2: answer has no final '#### n' line"):
        task.records("train")
    (tmp_path / "train.jsonl").write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(DataError, match=r"train\.jsonl:1: missing or non-string field\(s\) answer"):
        task.records("train")


def test_gold_answer_reads_after_the_last_marker() -> None:
    assert gold_answer("so 3 #### 4 apples\n#### 1,000") == "1,000"


def test_collate_marks_answer_tokens_as_targets_and_pads_right() -> None:
    batch = make_batch([([5, 6, 7], [8, 9]), ([5], [8, 9, 10, 11])], pad_id=2)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 8, 9, 10, 11]]
    assert batch.labels.tolist() == [[IGNORE_INDEX] * 3 + [8, 9], [IGNORE_INDEX, 8, 9, 10, 11]]
    short = make_batch([([5, 6], [8])], pad_id=2)
    assert short.attention_mask.tolist() == [[1, 1, 1]] and short.prompt_lengths.tolist() == [2]
    pretrain = make_batch([([5, 6], [8])], pretrain=True)
    assert pretrain.labels.tolist() == [[5, 6, 8]] and pretrain.prompt_lengths.tolist() == [0]


def test_data_parallel_ranks_cover_exactly_the_single_process_step() -> None:
    single = StepSampler(37, batch_size=3, grad_accum=4, seed=5)
    ranks = [StepSampler(37, batch_size=3, grad_accum=2, world_size=2, rank=r, seed=5) for r in (0, 1)]
    for step in range(30):  # several epochs, crossing boundaries
        expected = sorted(i for micro in single.micro_batches(step) for i in micro)
        got = sorted(i for sampler in ranks for micro in sampler.micro_batches(step) for i in micro)
        assert got == expected
    seen = [i for step in range(37) for micro in single.micro_batches(step) for i in micro]
    for epoch in range(12):  # every epoch is a permutation
        assert sorted(seen[epoch * 37 : (epoch + 1) * 37]) == list(range(37))
    assert single.steps_for_epochs(1.0) == 4


def test_plain_text_task_holds_out_documents(tmp_path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"doc {i}" for i in range(40)) + "\n\n")
    task = PlainText(PlainTextParams(train_file=str(corpus), test_fraction=0.1))
    train, test = task.records("train"), task.records("test")
    assert len(test) == 4 and len(train) == 36 and not {r["text"] for r in train} & {r["text"] for r in test}
    with pytest.raises(ValueError, match="does not exist"):
        PlainTextParams(train_file=str(tmp_path / "missing.txt"))


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_backend_encoding_equals_the_hugging_face_call(kind, tmp_path, monkeypatch) -> None:
    """tokenize() encodes through the Rust backend (fast); its ids must be exactly the tokenizer call's."""
    from mtp_bench.data.pipeline import encode_texts
    from mtp_bench.models import tokenizer as tokenizers

    monkeypatch.setattr(tokenizers, "cache_root", lambda: tmp_path)
    texts = ["Question: 12 + 30 = ?", "Answer: 42 #### 42", "", "caf\u00e9 \u00fcber na\u00efve 7\u00d78", "a  b\n\nc"]
    tok = tokenizers.trained_tokenizer(kind, texts * 20, 300)
    for special in (True, False):
        expected = tok(texts, add_special_tokens=special)["input_ids"]
        assert [list(ids) for ids in encode_texts(tok, texts, add_special_tokens=special)] == expected


def test_backend_encoding_falls_back_when_it_would_differ(tmp_path, monkeypatch) -> None:
    """A backend with padding switched on (as some hub tokenizer files ship) would pad: the call is used instead."""
    from mtp_bench.data.pipeline import encode_texts
    from mtp_bench.models import tokenizer as tokenizers

    monkeypatch.setattr(tokenizers, "cache_root", lambda: tmp_path)
    texts = ["one two", "one two three four five", "three"]
    tok = tokenizers.trained_tokenizer("word", texts * 5, 100)
    expected = tok(texts, add_special_tokens=False)["input_ids"]
    tok.backend_tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=8)
    assert [list(ids) for ids in encode_texts(tok, texts, add_special_tokens=False)] == expected
