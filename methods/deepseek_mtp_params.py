"""Settings of ``deepseek_mtp`` (:mod:`mtp_bench.methods.deepseek_mtp`); imports no torch, so that a suite validates
without importing the method (the ``mtp_bench.method_params`` entry point names it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mtp_bench.api.settings import Settings


class DeepSeekMTPParams(Settings):
    """Settings of DeepSeek-V3 multi-token prediction."""

    depth: int = Field(default=1, ge=1)
    """D, the number of sequential modules; module k predicts x_{t+k+1} (DeepSeek-V3 uses 1)."""

    weight: float = Field(default=0.3, ge=0.0)
    """lambda: ``L_ntp + (lambda / D) * sum_k L_k`` (DeepSeek-V3: 0.3, later 0.1)."""

    init: Literal["last_block", "random"] = "last_block"
    """Initial decoder layer of each module: a copy of the model's last layer, or freshly initialised."""
