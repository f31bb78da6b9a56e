"""Settings of the built-in scorers: pydantic models only, no torch, so that a suite validates without importing a
scorer. Each scorer keeps ``Params`` pointing here; the ``mtp_bench.scorer_params`` entry points name these classes
(see :func:`mtp_bench.registry.load_params`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GSM8KScorerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_new_tokens: int | None = None
    """Decoding budget; default: ``evaluation.max_new_tokens`` (512 in the paper)."""


class ExactMatchParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_new_tokens: int | None = None
    """Decoding budget; default: ``evaluation.max_new_tokens``."""


class StarGraphParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_new_tokens: int | None = None
    """Decoding budget; default: ``evaluation.max_new_tokens`` (a path needs about twice its length in tokens)."""

    directed: bool = True
    """Edges go from ``u`` to ``v`` only (star graphs point away from the centre). False accepts either direction
    when checking ``valid_path_rate``."""


class SpeculativeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    k: int = Field(default=3, ge=1)
    """Drafts per verifier step at most (a method may offer fewer: MTP heads have ``n_future - 1``)."""

    limit: int | None = Field(default=32, ge=1)
    """Examples decoded (each twice, one at a time): the first ``limit`` of the split; None: all."""

    max_new_tokens: int | None = Field(default=None, ge=1)
    """Decoding budget; default: ``evaluation.max_new_tokens``."""
