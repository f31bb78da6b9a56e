"""DialogSum's two test-set counts: ROUGE with the best of a dialogue's references (``rouge1`` ..., one row per
dialogue) and, with ``per_reference``, ROUGE over every (dialogue, reference) pair (``rouge1_per_reference`` ...,
the MuToR paper's ~1.5K test samples). Checked by hand on a small case and against rouge-score on real DialogSum
references, with each pair scored on its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtp_bench.api.task import Example
from mtp_bench.data.pipeline import format_examples
from mtp_bench.scorers.rouge import ROUGE_TYPES, Rouge, rouge
from mtp_bench.scorers.rouge_params import RougeParams

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


class CannedContext:
    """Stands in for EvalContext: fixed completions."""

    def __init__(self, completions: list[str]):
        self.completions = completions

    def generate(self, examples: list[Example], max_new_tokens: int | None = None) -> list[str]:
        assert len(examples) == len(self.completions)
        return list(self.completions)


def summary(*references: str) -> Example:
    return Example(prompt="Dialogue:\nA: hi\n\nSummary:", answer=" " + references[0],
                   record={"references": list(references)})


def test_per_reference_means_weigh_every_pair_by_hand() -> None:
    # dialogue 1: prediction equals reference 1 (F 1) and shares nothing with reference 2 (F 0): best 1, pairs 1, 0;
    # dialogue 2: one reference, "a b c" against "a b d e" -> rouge1 4/7 (see test_paper_scorers): best = pair.
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
    if not (SHARED / "dialogsum" / "dialogsum.test.jsonl").is_file():
        pytest.skip(f"DialogSum not found at {SHARED / 'dialogsum'} (the shared data folder beside the repository)")
    from mtp_bench.tasks.dialogsum import DialogSum, DialogSumParams

    task = DialogSum(DialogSumParams(path=str(SHARED / "dialogsum"), train_file="dialogsum.dev.jsonl"))
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
