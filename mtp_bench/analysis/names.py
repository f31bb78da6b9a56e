"""What a metric name means to analysis: which table section and checkpoint it belongs to, where its per-question
results live, whether it is bounded (and so never gets an interval outside [0, 1]), and how people read it.

**Bounded rule.** A metric is a proportion in [0, 1] when any ``/``-separated part of its name is an accuracy, a
match, a rate or a consistency: one of the part's ``_``/``-``-separated words is ``acc``, ``accuracy``, ``match``,
``rate`` or ``consistency`` (so a qualified name such as ``accuracy_flexible``, ``exact_match_flexible`` or
``strict-match`` counts), or the part starts with ``rouge``, ``acceptance``, ``f1``, ``precision`` or ``recall`` (e.g.
``test/exact_match/exact_match``, ``val/acc/h2``, ``test/multiple_choice/accuracy_flexible``,
``test/star_graph/valid_path_rate``, ``test/image/class_consistency``,
``lm_eval/gsm8k_local/exact_match/strict-match``, ``acceptance/h2``). Losses, costs (FLOPs, seconds, tokens,
parameters), ``tau``, ``speedup``, steps, learning rates, distances (``classifier_frechet_distance``, ``fid``) and
Inception-style scores (``classifier_score``, ``inception_score``) are non-negative: bounded below by 0 only; a
non-negative word wins over a bounded one. Intervals are clipped to the range (:mod:`mtp_bench.analysis.stats`).
"""

from __future__ import annotations

import math
import re

from mtp_bench.suite.reference import CHECKPOINTS  # one list of checkpoint prefixes, declared with the suite schema

CHECKPOINT_LABELS = {"last": "last checkpoint", "best": "best on validation",
                     "best_on_test": "best on TEST split (paper protocol; optimistic)"}
CHECKPOINT_SHORT = {"last": "last", "best": "best", "best_on_test": "TEST-sel."}
SECTIONS = ("scores", "per-horizon accuracy", "held-out loss", "selected checkpoint", "cost")
COST_METRICS = ("params/extra", "params/total", "train/flops_total", "train/seconds_total",
                "train/tokens_processed_total")
UNIT_BOUNDS = (0.0, 1.0)
NON_NEGATIVE = (0.0, math.inf)
_HORIZON = re.compile(r"test/acc/(ntp|h\d+|h\d+_-?\d+)")  # h{d} ahead, or h{dy}_{dx}: a 2D offset (MuToR-2D)
_OFFSET_2D = re.compile(r"h(\d+)_(-?\d+)")
_BOUNDED_WORDS = {"acc", "accuracy", "match", "rate", "consistency"}
_BOUNDED_PREFIX = re.compile(r"(rouge|acceptance|f1|precision|recall).*")
_WORD = re.compile(r"[_\-]")
_UNBOUNDED_PART = re.compile(r"loss|tau|speedup|flops.*|seconds.*|tokens.*|step|params|.*_distance|classifier_score|fid"
                             r"|inception_score|lr|learning_rate")

# Words of metric names as people say them.
_WORDS = {"val": "validation", "acc": "accuracy", "ntp": "next-token", "gsm8k": "GSM8K", "lm_eval": "lm-eval",
          "flops": "FLOPs", "params": "parameters", "step": "optimiser step", "best_on_test": "best on TEST"}
LABELS = {  # whole names whose reading is not word by word
    "step": "optimiser step",
    "best/step": "selected step",
    "train/flops_total": "training FLOPs",
    "train/seconds_total": "training seconds",
    "train/tokens_processed_total": "positions processed in training",
    "params/extra": "extra parameters",
    "params/total": "parameters",
}


def is_bounded(metric: str) -> bool:
    """True when the metric is a proportion in [0, 1] (see the module docstring for the rule)."""
    parts = [part for part in metric.split("/") if part]
    if any(_UNBOUNDED_PART.fullmatch(part) for part in parts):
        return False
    return any(_BOUNDED_PREFIX.fullmatch(part) or _BOUNDED_WORDS & set(_WORD.split(part)) for part in parts)


def is_non_negative(metric: str) -> bool:
    """True for quantities that cannot go below 0: losses, costs, times, counts, steps, ``tau``, ``speedup``."""
    return any(_UNBOUNDED_PART.fullmatch(part) for part in metric.split("/") if part) or metric in COST_METRICS


def bounds(metric: str) -> tuple[float, float] | None:
    """(low, high) of a metric's range: [0, 1] for proportions, [0, inf) for non-negative quantities, else None."""
    if is_bounded(metric):
        return UNIT_BOUNDS
    return NON_NEGATIVE if is_non_negative(metric) else None


def human_label(metric: str) -> str:
    """A metric key as people read it: ``test/exact_match/exact_match`` -> ``test exact match``,
    ``val/star_graph/first_step_accuracy`` -> ``validation star graph first step accuracy``, ``test/acc/h2`` ->
    ``test accuracy h2``, ``val/acc/h1_-1`` -> ``validation accuracy offset (1,-1)`` (rows down, columns right).
    Repeated words (scorer and metric of one name) are said once."""
    if metric in LABELS:
        return LABELS[metric]
    words: list[str] = []
    for part in metric.split("/"):
        offset = _OFFSET_2D.fullmatch(part)
        phrase = f"offset ({offset[1]},{offset[2]})" if offset else _WORDS.get(part, part.replace("_", " "))
        for word in phrase.split(" "):
            if word and word not in words:
                words.append(word)
    return " ".join(words)


def short_name(metric: str) -> str:
    """A compact name for narrow tables: the ``test/`` prefix dropped and a part repeated right after itself once
    (``test/exact_match/exact_match`` -> ``exact_match``)."""
    parts = [part for part in metric.split("/") if part]
    if parts and parts[0] == "test" and len(parts) > 1:
        parts = parts[1:]
    kept = [part for i, part in enumerate(parts) if i == 0 or part != parts[i - 1]]
    return "/".join(kept)


def classify(name: str, scorers: set[str]) -> tuple[str, str, str] | None:
    """(section, checkpoint, metric) of a final metric name, or None for names compare does not tabulate."""
    if name in COST_METRICS:
        return "cost", "", name
    checkpoint, _, rest = name.partition("/")
    if checkpoint not in CHECKPOINTS or not rest:
        return None
    if rest == "step" or rest.startswith("val/"):
        return "selected checkpoint", checkpoint, rest
    parts = rest.split("/")
    if parts[0] == "lm_eval":
        return ("scores", checkpoint, rest) if len(parts) == 4 and not parts[2].endswith("_stderr") else None
    if parts[0] != "test":
        return None
    if len(parts) >= 3 and (parts[1] in scorers or (not scorers and parts[1] not in ("loss", "acc"))):
        return "scores", checkpoint, rest
    if _HORIZON.fullmatch(rest):
        return "per-horizon accuracy", checkpoint, rest
    return "held-out loss", checkpoint, rest


def sample_source(checkpoint: str, metric: str) -> tuple[str, str] | None:
    """(artifact path, per-sample score key) holding the per-question results behind a score metric."""
    parts = metric.split("/")
    if parts[0] == "test" and len(parts) >= 3:
        return f"predictions/{checkpoint}/test_{parts[1]}.jsonl", "/".join(parts[2:])
    if parts[0] == "lm_eval" and len(parts) == 4:
        return f"predictions/{checkpoint}/lm_eval/{parts[1]}.jsonl", "/".join(parts[2:])
    return None
