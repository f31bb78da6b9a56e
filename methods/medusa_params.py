"""Settings of ``medusa`` (:mod:`mtp_bench.methods.medusa`); imports no torch, so that a suite validates without
importing the method (the ``mtp_bench.method_params`` entry point names it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mtp_bench.api.settings import Settings


class MedusaParams(Settings):
    """Settings of Medusa heads."""

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
