"""Settings of the paper-task scorers (``math``, ``multiple_choice``, ``rouge``): pydantic models only, no torch, so
that a suite validates without importing the scorers (``mtp_bench.scorer_params`` entry points name these)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MathParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_new_tokens: int | None = Field(default=None, ge=1)
    """Decoding budget; default ``evaluation.max_new_tokens`` (MATH500 solutions are long: the paper's MATH-style
    data allowed 768-token sequences)."""


class MultipleChoiceParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    letters: str = Field(default="ABCDE", pattern=r"^[A-Z]{2,26}$")
    """The option letters (AQuA-RAT: ``ABCDE``)."""

    max_new_tokens: int | None = Field(default=None, ge=1)
    """Decoding budget; default ``evaluation.max_new_tokens``."""


class RougeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    use_stemmer: bool = True
    """Porter-stem words before matching (the usual setting for summarisation results)."""

    per_reference: bool = False
    """Also report each metric over every (example, reference) pair, as ``rouge1_per_reference`` etc.: the mean of
    the prediction's score against each reference, each pair weighing the same. The MuToR paper counts DialogSum's
    test set this way (~1.5K samples: 500 dialogues x 3 references); ``rouge1`` etc. keep the best reference per
    example."""

    max_new_tokens: int | None = Field(default=None, ge=1)
    """Decoding budget; default ``evaluation.max_new_tokens``."""
