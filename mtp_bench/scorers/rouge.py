"""ROUGE-1/2/L F-measures for summarisation (rouge-score, stemming, best of several references).

Computed by Google's ``rouge-score`` package (the standard implementation: its tokeniser lower-cases and keeps
``[a-z0-9]`` runs, Porter stemming on by default).

Each metric is the F-measure in [0, 1] (the MuToR paper's tables print it x100), averaged over examples. Where an
example has several references (DialogSum's test set has three), each metric takes its best reference separately
(rouge-score's ``score_multi``). With ``per_reference``, ``<metric>_per_reference`` also averages the score against
each reference over every (example, reference) pair: the MuToR paper's count of DialogSum's test set (one row per
dialogue and reference). ``rougeL`` is the main metric, so checkpoints are selected on validation ROUGE-L as in the
paper. References come from the record's ``references`` list, else its formatted answer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mtp_bench.api.scorer import EvalContext, ScoreResult, score_each
from mtp_bench.api.task import Example
from mtp_bench.scorers.rouge_params import RougeParams

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(prediction: str, references: list[str], use_stemmer: bool = True) -> dict[str, float]:
    """F-measures of one prediction against its references, the best reference per metric."""
    from rouge_score import rouge_scorer  # imported here: nltk is slow to import and validation must stay fast

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    scores = scorer.score_multi(references, prediction)
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}


def rouge_each(prediction: str, references: list[str], use_stemmer: bool = True) -> list[dict[str, float]]:
    """F-measures of one prediction against each reference on its own, in reference order."""
    return [rouge(prediction, [reference], use_stemmer) for reference in references]


def per_reference_means(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Each metric averaged over every (example, reference) pair of the samples' ``per_reference`` scores."""
    pairs = [scores for row in samples for scores in row["per_reference"]]
    return {f"{name}_per_reference": sum(s[name] for s in pairs) / max(len(pairs), 1) for name in ROUGE_TYPES}


class Rouge:
    """ROUGE-1/2/L F-measures, max over references."""

    name: ClassVar[str] = "rouge"
    Params: ClassVar[type] = RougeParams
    main_metric: ClassVar[str] = "rougeL"

    def __init__(self, params: RougeParams):
        self.params = params

    def score(self, context: EvalContext, examples: list[Example]) -> ScoreResult:
        result = score_each(context, examples, self.params.max_new_tokens, self.judge, ROUGE_TYPES)
        if self.params.per_reference:
            result.metrics.update(per_reference_means(result.samples))
        return result

    def judge(self, index: int, example: Example, completion: str) -> dict[str, Any]:
        references = list(example.record.get("references") or [example.answer.strip()])
        prediction = completion.strip()
        row = {
            "index": index,
            "prediction": prediction,
            "references": references,
            "scores": rouge(prediction, references, self.params.use_stemmer),
        }
        if self.params.per_reference:
            row["per_reference"] = rouge_each(prediction, references, self.params.use_stemmer)
        return row
