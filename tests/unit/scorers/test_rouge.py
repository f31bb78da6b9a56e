"""The ROUGE scorer: numbers worked out by hand, stemming, case and punctuation, the best of several references; and
DialogSum's two test-set counts: ROUGE with the best of a dialogue's references (``rouge1`` ..., one row per
dialogue) and, with ``per_reference``, ROUGE over every (dialogue, reference) pair (``rouge1_per_reference`` ...,
the MuToR paper's ~1.5K test samples). Checked by hand on small cases and against rouge-score on real DialogSum
references, with each pair scored on its own."""

from __future__ import annotations

import pytest

from helpers import CannedContext, shared_data
from mtp_bench.api.task import Example
from mtp_bench.data.pipeline import format_examples
from mtp_bench.scorers.rouge import ROUGE_TYPES, Rouge, rouge
from mtp_bench.scorers.rouge_params import RougeParams


def summary(*references: str) -> Example:
    return Example(prompt="Dialogue:\nA: hi\n\nSummary:", answer=" " + references[0],
                   record={"references": list(references)})


def test_rouge_golden_numbers_by_hand() -> None:
    # unigrams: the x2, cat, on, mat shared of 6 each -> 5/6; bigrams: the-cat, on-the, the-mat of 5 -> 3/5;
    # longest common subsequence "the cat on the mat" = 5 of 6 -> 5/6
    scores = rouge("the cat sat on the mat", ["the cat lay on the mat"])
    assert scores == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6})
    # unigrams: 2 shared, precision 2/3, recall 2/4 -> F = 2PR/(P+R) = 4/7; bigrams: "a b" shared, 1/2 and 1/3 ->
    # F = 2/5; longest common subsequence "a b" (2 tokens) -> 4/7 as for unigrams
    assert rouge("a b c", ["a b d e"]) == pytest.approx({"rouge1": 4 / 7, "rouge2": 2 / 5, "rougeL": 4 / 7})


def test_rouge_stems_and_ignores_case_and_punctuation() -> None:
    # stemmed: "cat run" against "the cat run": precision 1, recall 2/3 -> F = 0.8
    assert rouge("Cats running!", ["the cat runs"])["rouge1"] == pytest.approx(0.8)
    assert rouge("Cats running!", ["the cat runs"], use_stemmer=False)["rouge1"] == 0.0


def test_rouge_takes_the_best_reference_per_metric() -> None:
    # reference 1 shares every word but no word pair in order; reference 2 shares one pair: rouge1 comes from the
    # first, rouge2 from the second
    prediction = "x y z"
    refs = ["z y x", "x y q r s t"]
    single = [rouge(prediction, [ref]) for ref in refs]
    both = rouge(prediction, refs)
    assert single[0]["rouge1"] == 1.0 and single[1]["rouge2"] > single[0]["rouge2"] == 0.0
    assert both == {name: max(s[name] for s in single) for name in ("rouge1", "rouge2", "rougeL")}


def test_rouge_scorer_on_real_dialogsum_references() -> None:
    """Each DialogSum test record scores 1.0 against itself when the prediction is one of its three references, and
    the multi-reference score is never below any single reference's."""
    dialogsum = shared_data("dialogsum", "dialogsum.test.jsonl", "DialogSum")
    from mtp_bench.tasks.dialogsum import DialogSum, DialogSumParams

    task = DialogSum(DialogSumParams(path=str(dialogsum), train_file="dialogsum.dev.jsonl"))
    records = task.records("test")[:5]
    examples = format_examples(records, task.prompt_template, task.answer_template, "dialogsum")
    context = CannedContext([r["references"][2] for r in records])
    result = Rouge(RougeParams()).score(context, examples)
    assert result.metrics == pytest.approx({"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0})
    first = records[0]
    alone = rouge(first["references"][2], first["references"][:1])
    assert alone["rougeL"] < 1.0
    assert result.samples[0]["references"] == first["references"] and len(first["references"]) == 3


def test_per_reference_means_weigh_every_pair_by_hand() -> None:
    # dialogue 1: prediction equals reference 1 (F 1) and shares nothing with reference 2 (F 0): best 1, pairs 1, 0;
    # dialogue 2: one reference, "a b c" against "a b d e" -> rouge1 4/7 (see test_rouge_golden_numbers_by_hand):
    # best = pair.
    examples = [summary("x y z", "q r s"), summary("a b d e")]
    context = CannedContext(["x y z", "a b c"])
    plain = Rouge(RougeParams()).score(context, examples)
    both = Rouge(RougeParams(per_reference=True)).score(context, examples)
    assert plain.metrics["rouge1"] == pytest.approx((1 + 4 / 7) / 2)
    assert set(plain.metrics) == set(ROUGE_TYPES)  # the option adds nothing unless asked for
    assert both.metrics["rouge1_per_reference"] == pytest.approx((1 + 0 + 4 / 7) / 3)  # 3 pairs, each weighs 1/3
    assert {k: both.metrics[k] for k in ROUGE_TYPES} == plain.metrics  # the best-reference metrics are unchanged
    assert [len(row["per_reference"]) for row in both.samples] == [2, 1]


def test_per_reference_on_real_dialogsum_is_the_mean_over_its_1500_pairs() -> None:
    dialogsum = shared_data("dialogsum", "dialogsum.test.jsonl", "DialogSum")
    from mtp_bench.tasks.dialogsum import DialogSum, DialogSumParams

    task = DialogSum(DialogSumParams(path=str(dialogsum), train_file="dialogsum.dev.jsonl"))
    records = task.records("test")
    assert sum(len(r["references"]) for r in records) == 1500  # the paper's ~1.5K test samples
    records = records[:6]
    examples = format_examples(records, task.prompt_template, task.answer_template, "dialogsum")
    predictions = [r["references"][0] for r in records]  # exact for one reference, a paraphrase for the others
    result = Rouge(RougeParams(per_reference=True)).score(CannedContext(predictions), examples)
    pairs = [rouge(p, [ref]) for p, r in zip(predictions, records) for ref in r["references"]]
    for name in ROUGE_TYPES:
        assert result.metrics[name] == pytest.approx(1.0)  # the best reference is the prediction itself
        assert result.metrics[f"{name}_per_reference"] == pytest.approx(sum(s[name] for s in pairs) / len(pairs))
        assert result.metrics[f"{name}_per_reference"] < 0.9  # the other two human summaries differ
