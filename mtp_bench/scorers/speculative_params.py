"""Settings of the ``speculative`` (self-speculative decoding) scorer; imports no torch, so that a suite validates
without importing the scorer (the ``mtp_bench.scorer_params`` entry point names it)."""

from __future__ import annotations

from pydantic import Field

from mtp_bench.api.settings import Settings


class SpeculativeParams(Settings):
    k: int = Field(default=3, ge=1)
    """Drafts per verifier step at most (a method may offer fewer: MTP heads have ``n_future - 1``)."""

    limit: int | None = Field(default=32, ge=1)
    """Examples decoded (each twice, one at a time): the first ``limit`` of the split; None: all."""

    max_new_tokens: int | None = Field(default=None, ge=1)
    """Decoding budget; default: ``evaluation.max_new_tokens``."""
