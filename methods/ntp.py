"""Next-token prediction: the baseline every multi-token objective is compared against.

Loss = token-mean cross-entropy of x_{t+1} given x_{<=t} over the target tokens (answer tokens in fine-tuning, every
token in pretraining), through the model's own LM head. The LM head runs only at positions that have a target (as in
every method here), so no method is charged for vocabulary-sized logits of prompt or padding positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from mtp_bench.api.anatomy import anatomy
from mtp_bench.api.batches import LossOutput, ModelBatch, TokenBatch
from mtp_bench.api.masks import plain_forward_inputs
from mtp_bench.api.method import MethodContext
from mtp_bench.api.targets import count_targets, shifted_targets, target_loss
from mtp_bench.methods.ntp_params import NTPParams


@dataclass(eq=False)
class NextTokenPrediction:
    params: NTPParams
    context: MethodContext
    name: ClassVar[str] = "ntp"
    Params: ClassVar[type] = NTPParams

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
        anat = anatomy(model)
        inputs = plain_forward_inputs(t["input_ids"], t["attention_mask"], model, t.get("prompt_lengths"))
        hidden = anat.backbone(**inputs, use_cache=False).last_hidden_state
        loss, correct = target_loss(anat.logits, hidden, t["targets"])
        return LossOutput(sums={"loss/ntp": loss, "acc/ntp": correct})

    def loss_weights(self) -> dict[str, float]:
        return {"loss/ntp": 1.0}

    def export(self, model: nn.Module, extra: nn.Module | None) -> nn.Module:
        return model
