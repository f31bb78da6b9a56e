"""Settings of the ``rouge`` (summaries) scorer; imports no torch, so that a suite validates without importing the
scorer (the ``mtp_bench.scorer_params`` entry point names it)."""

from __future__ import annotations

from pydantic import Field

from mtp_bench.api.settings import Settings


class RougeParams(Settings):
    use_stemmer: bool = True
    """Porter-stem words before matching (the usual setting for summarisation results)."""

    per_reference: bool = False
    """Also report each metric over every (example, reference) pair, as ``rouge1_per_reference`` etc.: the mean of
    the prediction's score against each reference, each pair weighing the same. The MuToR paper counts DialogSum's
    test set this way (~1.5K samples: 500 dialogues x 3 references); ``rouge1`` etc. keep the best reference per
    example."""

    max_new_tokens: int | None = Field(default=None, ge=1)
    """Decoding budget; default ``evaluation.max_new_tokens``."""
