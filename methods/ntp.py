"""Next-token prediction: the baseline every multi-token objective is compared against.

Loss = token-mean cross-entropy of x_{t+1} given x_{<=t} over the target tokens (answer tokens in fine-tuning, every
token in pretraining), through the model's own LM head.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from torch import nn

from mtp_bench.api import (
    LossOutput,
    MethodContext,
    ModelBatch,
    TokenBatch,
    correct_sum,
    count_targets,
    cross_entropy_sum,
    plain_forward_inputs,
    shifted_targets,
)


class NTPParams(BaseModel):
    """Next-token prediction has no settings of its own."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class NextTokenPrediction:
    name: ClassVar[str] = "ntp"
    Params: ClassVar[type] = NTPParams

    def __init__(self, params: NTPParams, context: MethodContext):
        self.params = params
        self.context = context

    def prepare(self, model: nn.Module, tokenizer: Any) -> nn.Module | None:
        return None

    def transform(self, batch: TokenBatch, generator: Any) -> ModelBatch:
        targets = shifted_targets(batch.labels)
        n_targets = count_targets(targets)
        tensors = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "targets": targets}
        if batch.bidirectional_prompt:
            tensors["prompt_lengths"] = batch.prompt_lengths
        return ModelBatch(
            tensors=tensors, counts={"loss/ntp": n_targets, "acc/ntp": n_targets}, n_tokens=batch.n_real_tokens
        )

    def loss(self, model: nn.Module, extra: nn.Module | None, batch: ModelBatch) -> LossOutput:
        t = batch.tensors
        logits = model(**plain_forward_inputs(t["input_ids"], t["attention_mask"], model, t.get("prompt_lengths"))).logits
        return LossOutput(
            sums={"loss/ntp": cross_entropy_sum(logits, t["targets"]), "acc/ntp": correct_sum(logits, t["targets"])},
            weights={"loss/ntp": 1.0},
        )

    def export(self, model: nn.Module, extra: nn.Module | None) -> nn.Module:
        return model
