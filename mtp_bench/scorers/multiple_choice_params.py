"""Settings of the ``multiple_choice`` (an option letter) scorer; imports no torch, so that a suite validates without
importing the scorer (the ``mtp_bench.scorer_params`` entry point names it)."""

from __future__ import annotations

from pydantic import Field

from mtp_bench.api.settings import Settings


class MultipleChoiceParams(Settings):
    letters: str = Field(default="ABCDE", pattern=r"^[A-Z]{2,26}$")
    """The option letters (AQuA-RAT: ``ABCDE``)."""

    max_new_tokens: int | None = Field(default=None, ge=1)
    """Decoding budget; default ``evaluation.max_new_tokens``."""
