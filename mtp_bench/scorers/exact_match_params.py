"""Settings of the ``exact_match`` (the whole answer string) scorer; imports no torch, so that a suite validates without
importing the scorer (the ``mtp_bench.scorer_params`` entry point names it)."""

from __future__ import annotations

from mtp_bench.api.settings import Settings


class ExactMatchParams(Settings):
    max_new_tokens: int | None = None
    """Decoding budget; default: ``evaluation.max_new_tokens``."""
