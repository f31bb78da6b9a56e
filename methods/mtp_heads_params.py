"""Settings of ``mtp_heads`` (:mod:`mtp_bench.methods.mtp_heads`); imports no torch, so that a suite validates without
importing the method (the ``mtp_bench.method_params`` entry point names it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mtp_bench.api.settings import Settings


class MTPHeadsParams(Settings):
    """Settings of multi-token prediction with extra heads. Defaults: the MuToR paper's tuned baseline."""

    n_future: int = Field(default=2, ge=1)
    """Tokens predicted per position, the next one included: ``n_future - 1`` extra heads (1: plain NTP)."""

    a: float = Field(default=0.1, ge=0.0, le=1.0)
    """Weight of the extra heads: ``(1 - a) * L_ntp + a * mean_i L_i``. Ignored when ``n_future`` is 1."""

    init: Literal["last_block", "random"] = "last_block"
    """Initial extra heads: copies of the model's last decoder layer, or freshly initialised layers."""

    sequential_backward: bool = False
    """Recompute each head (layer, LM head, loss) in the backward pass, one at a time: peak memory holds one head's
    logits instead of all of them, at the cost of one extra forward per head. Same gradients."""
