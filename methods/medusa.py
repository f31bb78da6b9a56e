"""Medusa (Cai et al., "Medusa: Simple LLM Inference Acceleration Framework with Multiple Decoding Heads", 2024).

K heads read the model's last hidden state (after the final norm, what the LM head reads); head i (1-based) is
``n_layers`` residual blocks ``x + SiLU(W x + b)`` (W, b start at zero: a new head starts as the LM head) followed
by an output layer, and predicts x_{t+i+1}. The output layer is the head's own copy of the LM head (Medusa's choice;
``own_lm_head: false`` shares the model's LM head instead: far fewer parameters on large vocabularies).

- ``medusa-1``: the backbone is frozen (no gradient, no activations kept); only the heads train.
  ``loss = sum_i w_i L_i`` with w_i = head_weight * decay^(i-1) (Medusa: 1 and 0.8); L_ntp is logged with weight 0.
  LoRA and pretraining are rejected: the adapters (or a random backbone) would never train.
- ``medusa-2``: joint training, ``loss = base_weight * L_ntp + sum_i w_i L_i`` with w_i = head_weight *
  decay^(i-1), head_weight defaulting to 0.2 (Medusa-2's lambda_0 on the heads, decaying per head).
Every L is a token mean over the effective batch; heads run only at positions that have a target. Export is the
plain model; heads are saved beside it and reloaded with :func:`load_heads`; they draft for speculative decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtp_bench.api.anatomy import Anatomy, anatomy
from mtp_bench.api.batches import LossOutput, ModelBatch, TokenBatch
from mtp_bench.api.decoding import verifier_forward
from mtp_bench.api.heads import heads_drafter, horizon_batch, load_saved_heads, save_heads
from mtp_bench.api.masks import plain_forward_inputs
from mtp_bench.api.method import MethodContext, required_extra
from mtp_bench.api.targets import target_loss
from mtp_bench.methods.medusa_params import MedusaParams


class ResidualBlock(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.linear = nn.Linear(size, size)
        # Zero weight and bias: a new head starts as the identity, predicting what the LM head does (Medusa zeroes
        # the weight only, which leaves a small random offset).
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return hidden + nn.functional.silu(self.linear(hidden))


class MedusaHead(nn.Module):
    def __init__(self, anat: Anatomy, n_layers: int, own_lm_head: bool):
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualBlock(anat.hidden_size) for _ in range(n_layers)])
        self.output: nn.Linear | None = None
        if own_lm_head:
            weight = anat.lm_head.weight
            bias = getattr(anat.lm_head, "bias", None)
            self.output = nn.Linear(weight.size(1), weight.size(0), bias=bias is not None)
            with torch.no_grad():
                self.output.weight.copy_(weight)
                if bias is not None:
                    self.output.bias.copy_(bias)


class MedusaHeads(nn.Module):
    def __init__(self, heads: list[MedusaHead]):
        super().__init__()
        self.heads = nn.ModuleList(heads)


def build_heads(model: nn.Module, params: MedusaParams) -> MedusaHeads:
    anat = anatomy(model)
    reference = anat.embed_tokens.weight
    with torch.random.fork_rng(devices=[]):  # must not shift what the trial draws later (LoRA)
        heads = MedusaHeads([MedusaHead(anat, params.n_layers, params.own_lm_head) for _ in range(params.n_heads)])
    return heads.to(device=reference.device, dtype=reference.dtype)


def load_heads(model: nn.Module, directory: Path) -> MedusaHeads:
    """The heads saved beside an export (its folder or its ``extra`` subfolder), rebuilt for ``model``."""
    return load_saved_heads(model, directory, Medusa.name, MedusaParams, build_heads)


def head_logits(anat: Anatomy, head: MedusaHead, hidden: Tensor) -> Tensor:
    """Logits of one head on final-normed hidden states."""
    hidden = head.blocks(hidden)
    if head.output is None:
        return anat.logits(hidden)
    logits = head.output(hidden)
    if anat.logit_softcap:
        logits = torch.tanh(logits / anat.logit_softcap) * anat.logit_softcap
    return logits


@dataclass(eq=False)
class Medusa:
    params: MedusaParams
    context: MethodContext
    name: ClassVar[str] = "medusa"
    Params: ClassVar[type] = MedusaParams

    def __post_init__(self) -> None:
        if self.params.variant == "medusa-1" and self.context.train_mode != "full":
            raise ValueError(
                f"medusa variant medusa-1 freezes the backbone, so train.mode={self.context.train_mode!r} would train "
                "nothing but the heads on an unchanged model (LoRA adapters get no gradient; a pretraining backbone "
                "stays random): use train.mode=full, or variant medusa-2"
            )

    @property
    def frozen(self) -> bool:
        return self.params.variant == "medusa-1"

    def head_weights(self) -> list[float]:
        first = self.params.head_weight
        if first is None:
            first = 1.0 if self.frozen else 0.2
        return [first * self.params.decay**i for i in range(self.params.n_heads)]

    def prepare(self, model: nn.Module, tokenizer: Any) -> nn.Module:
        if self.frozen:
            model.requires_grad_(False)
        return build_heads(model, self.params)

    def transform(self, batch: TokenBatch, generator: torch.Generator) -> ModelBatch:
        return horizon_batch(batch, self.params.n_heads + 1)

    def loss(self, model: nn.Module, extra: nn.Module | None, batch: ModelBatch) -> LossOutput:
        extra = required_extra(extra, self.name, "heads")
        t = batch.tensors
        anat = anatomy(model)
        inputs = plain_forward_inputs(t["input_ids"], t["attention_mask"], model, t.get("prompt_lengths"))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = anat.backbone(**inputs, use_cache=False).last_hidden_state
            loss, correct = target_loss(anat.logits, hidden, t["targets_ntp"])
        sums = {"loss/ntp": loss, "acc/ntp": correct}
        if self.frozen:
            hidden = hidden.detach()
        for i, head in enumerate(extra.heads, start=1):
            loss, correct = target_loss(lambda h, head=head: head_logits(anat, head, h), hidden,
                                        t[f"targets_h{i + 1}"])
            sums[f"loss/h{i + 1}"], sums[f"acc/h{i + 1}"] = loss, correct
        return LossOutput(sums=sums)

    def loss_weights(self) -> dict[str, float]:
        """The next-token loss (none under medusa-1: the backbone is frozen) and each head's decayed weight."""
        weights = {"loss/ntp": 0.0 if self.frozen else self.params.base_weight}
        weights.update({f"loss/h{i + 2}": w for i, w in enumerate(self.head_weights())})
        return weights

    def export(self, model: nn.Module, extra: nn.Module | None) -> nn.Module:
        return model

    def save_extra(self, extra: nn.Module, directory: Path) -> None:
        save_heads(extra, directory, self.name, self.params)

    def make_drafter(self, model: nn.Module, extra: nn.Module | None, k: int) -> MedusaDrafter | None:
        return heads_drafter(MedusaDrafter, model, extra.heads if extra is not None else None, k)


class MedusaDrafter:
    """Self-speculative drafting with Medusa heads (a :class:`mtp_bench.api.method.Drafter`, greedy top-1
    drafts, no tree): the verifier's forward records the final hidden states; head i drafts x_{t+i+1} from the last
    accepted position."""

    def __init__(self, model: nn.Module, heads: list[MedusaHead]):
        self.model, self.heads, self.max_drafts = model, heads, len(heads)
        self.anat = anatomy(model)

    @torch.inference_mode()
    def forward(self, input_ids: Tensor, cache: Any, past_length: int, prefill: bool = False,
                bidirectional: bool = False) -> Tensor:
        logits, capture = verifier_forward(self.anat, input_ids, cache, past_length, bidirectional)
        self.hidden = capture.final[0]
        return logits

    @torch.inference_mode()
    def accept(self, kept: int, next_token: int) -> list[int]:
        last = self.hidden[kept - 1]
        return [int(head_logits(self.anat, head, last).argmax()) for head in self.heads]
