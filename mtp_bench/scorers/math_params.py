"""Settings of the ``math`` (MATH answers in a box) scorer; imports no torch, so that a suite validates without
importing the scorer (the ``mtp_bench.scorer_params`` entry point names it)."""

from __future__ import annotations

from pydantic import Field

from mtp_bench.api.settings import Settings


class MathParams(Settings):
    max_new_tokens: int | None = Field(default=None, ge=1)
    """Decoding budget; default ``evaluation.max_new_tokens`` (MATH500 solutions are long: the paper's MATH-style
    data allowed 768-token sequences)."""
