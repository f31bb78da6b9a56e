"""Settings of the built-in methods: pydantic models only, no torch, so that a suite validates without importing a
method (``mtp-bench validate`` stays fast). Each method's file keeps ``Params`` pointing here; the
``mtp_bench.method_params`` entry points name these classes (see :func:`mtp_bench.registry.load_params`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class NTPParams(BaseModel):
    """Next-token prediction has no settings of its own."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class MuToRParams(BaseModel):
    """Settings of MuToR. Defaults are the paper's best for GSM8K fine-tuning (d_max 4, a 0.3)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    a: float = Field(default=0.3, ge=0.0, le=1.0)
    """Weight of the register loss: ``(1 - a) * L_ntp + a * L_reg``. With 0 the objective is plain NTP."""

    d_min: int = Field(default=1, ge=1)
    """Smallest offset: a register after x_t predicts x_{t+d}, d drawn per sequence uniformly from d_min..d_max
    (the paper uses 1 for fine-tuning, 2 for the star-graph task)."""

    d_max: int = Field(default=4, ge=1)
    """Largest offset (the paper: 4 for GSM8K, 6 with the largest data sets, 3-4 for summarisation)."""

    register_init: Literal["mean", "random"] = "mean"
    """Initial register embedding: ``mean`` of the input-embedding rows (a typical token, so early training is
    not disturbed by an out-of-distribution input), or ``random``: normal with the embeddings' standard deviation
    (close to what the official code got from resizing the vocabulary)."""

    registers: Literal["shared", "per_offset"] = "shared"
    """``shared``: one learned register embedding for every offset (the paper's method). ``per_offset``: one per
    offset d_min..d_max, each register (and the drafter) using that of the offset it predicts (the paper's ablation,
    Table 6); each starts as the shared one would."""

    registers_per_sequence: int | None = Field(default=None, ge=1)
    """Sparse registers: this many per sequence at random positions among the eligible ones (the paper's image
    experiments). None: a register before every target token (dense, the paper's language setting)."""

    @model_validator(mode="after")
    def _offsets_ordered(self) -> MuToRParams:
        if self.d_min > self.d_max:
            raise ValueError(f"d_min ({self.d_min}) must not exceed d_max ({self.d_max})")
        return self


class MTPHeadsParams(BaseModel):
    """Settings of multi-token prediction with extra heads. Defaults: the MuToR paper's tuned baseline."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    n_future: int = Field(default=2, ge=1)
    """Tokens predicted per position, the next one included: ``n_future - 1`` extra heads (1: plain NTP)."""

    a: float = Field(default=0.1, ge=0.0, le=1.0)
    """Weight of the extra heads: ``(1 - a) * L_ntp + a * mean_i L_i``. Ignored when ``n_future`` is 1."""

    init: Literal["last_block", "random"] = "last_block"
    """Initial extra heads: copies of the model's last decoder layer, or freshly initialised layers."""

    sequential_backward: bool = False
    """Recompute each head (layer, LM head, loss) in the backward pass, one at a time: peak memory holds one head's
    logits instead of all of them, at the cost of one extra forward per head. Same gradients."""


class DeepSeekMTPParams(BaseModel):
    """Settings of DeepSeek-V3 multi-token prediction."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    depth: int = Field(default=1, ge=1)
    """D, the number of sequential modules; module k predicts x_{t+k+1} (DeepSeek-V3 uses 1)."""

    weight: float = Field(default=0.3, ge=0.0)
    """lambda: ``L_ntp + (lambda / D) * sum_k L_k`` (DeepSeek-V3: 0.3, later 0.1)."""

    init: Literal["last_block", "random"] = "last_block"
    """Initial decoder layer of each module: a copy of the model's last layer, or freshly initialised."""


class MedusaParams(BaseModel):
    """Settings of Medusa heads."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    variant: Literal["medusa-1", "medusa-2"] = "medusa-2"
    """``medusa-1``: frozen backbone, only the heads train; ``medusa-2``: heads and backbone train jointly."""

    n_heads: int = Field(default=4, ge=1)
    """K, the number of heads; head i predicts x_{t+i+1} (the Medusa paper uses 5)."""

    n_layers: int = Field(default=1, ge=1)
    """Residual blocks per head (Medusa: 1)."""

    own_lm_head: bool = True
    """Each head has its own output layer, initialised from the LM head (Medusa). False: heads share the model's
    LM head (K * vocabulary * hidden fewer parameters; under medusa-2 the shared head also trains on their loss)."""

    head_weight: float | None = Field(default=None, ge=0.0)
    """Weight of head 1's loss; head i gets ``head_weight * decay^(i-1)``. Default: 1.0 (medusa-1), 0.2 (medusa-2)."""

    decay: float = Field(default=0.8, gt=0.0)
    """Per-head decay of the loss weight (Medusa: 0.8)."""

    base_weight: float = Field(default=1.0, ge=0.0)
    """Weight of the next-token loss under medusa-2 (medusa-1 always uses 0: the backbone is frozen)."""
