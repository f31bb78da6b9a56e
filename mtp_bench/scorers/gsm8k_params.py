"""Settings of the ``gsm8k`` (GSM8K exact match) scorer; imports no torch, so that a suite validates without importing
the scorer (the ``mtp_bench.scorer_params`` entry point names it)."""

from __future__ import annotations

from mtp_bench.api.settings import Settings


class GSM8KScorerParams(Settings):
    max_new_tokens: int | None = None
    """Decoding budget; default: ``evaluation.max_new_tokens`` (512 in the paper)."""
