"""Multi-token prediction with extra transformer heads (Gloeckle et al., "Better & Faster Large Language Models via
Multi-token Prediction", ICML 2024) — the MuToR paper's multi-token baseline.

The model's last decoder layer is head 1 (next token). ``n_future - 1`` extra decoder layers of the model's own
architecture read the *input* of that last layer; head i (i >= 2) predicts x_{t+i}. All heads share the model's final
norm and LM head. The trunk runs once; each head's LM head runs only at the positions that have a target.

    loss = (1 - a) * L_ntp + a * mean_{i=2..n} L_i       (each a token mean over the effective batch)

The MuToR paper's tuned baseline: n_future 2, a 0.1. ``sequential_backward`` is the paper's memory saving: each
head's layer, LM head and loss are recomputed in the backward pass one head at a time, so only one head's
vocabulary-sized logits are alive at once (the price: one more forward of each head).
Export is the plain model; the heads are saved beside it (``heads.safetensors`` + ``heads.json``) and come back with
:func:`load_heads`. They also draft for self-speculative decoding (:meth:`MultiTokenHeads.make_drafter`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mtp_bench.api.anatomy import anatomy, new_block, run_layer, run_trunk
from mtp_bench.api.batches import LossOutput, ModelBatch, TokenBatch
from mtp_bench.api.decoding import crop_cache, new_cache, verifier_forward
from mtp_bench.api.heads import heads_drafter, horizon_batch, load_saved_heads, save_heads
from mtp_bench.api.masks import plain_forward_inputs
from mtp_bench.api.method import MethodContext
from mtp_bench.api.targets import target_loss
from mtp_bench.methods.mtp_heads_params import MTPHeadsParams


class TransformerHeads(nn.Module):
    """The extra heads: ``blocks[i]`` predicts x_{t+i+2}."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


def build_heads(model: nn.Module, params: MTPHeadsParams) -> TransformerHeads:
    anat = anatomy(model)
    with torch.random.fork_rng(devices=[]):  # random init must not shift what the trial draws later (LoRA)
        return TransformerHeads([new_block(anat, params.init) for _ in range(params.n_future - 1)])


def load_heads(model: nn.Module, directory: Path) -> TransformerHeads:
    """The heads saved beside an export (its folder or its ``extra`` subfolder), rebuilt for ``model``."""
    # init last_block: the weights are overwritten anyway
    return load_saved_heads(model, directory, MultiTokenHeads.name, MTPHeadsParams, build_heads, init="last_block")


@dataclass(eq=False)
class MultiTokenHeads:
    params: MTPHeadsParams
    context: MethodContext
    name: ClassVar[str] = "mtp_heads"
    Params: ClassVar[type] = MTPHeadsParams

    @property
    def horizons(self) -> range:
        """The offsets the extra heads predict (head k the token k steps ahead); offset 1 is the base LM head's."""
        return range(2, self.params.n_future + 1)

    def prepare(self, model: nn.Module, tokenizer: Any) -> nn.Module | None:
        return build_heads(model, self.params) if self.params.n_future > 1 else None

    def transform(self, batch: TokenBatch, generator: torch.Generator) -> ModelBatch:
        return horizon_batch(batch, self.params.n_future)

    def loss(self, model: nn.Module, extra: nn.Module | None, batch: ModelBatch) -> LossOutput:
        t = batch.tensors
        anat = anatomy(model)
        trunk = run_trunk(model, plain_forward_inputs(t["input_ids"], t["attention_mask"], model,
                                                      t.get("prompt_lengths")))

        def ntp_head(hidden: Tensor) -> tuple[Tensor, Tensor]:
            return target_loss(anat.logits, hidden, t["targets_ntp"])

        def extra_head(block: nn.Module, targets: Tensor):
            def run(last_input: Tensor) -> tuple[Tensor, Tensor]:
                hidden = run_layer(block, last_input, trunk.layer_arguments)
                return target_loss(anat.logits, anat.final_norm(hidden), targets)

            return run

        heads = [(ntp_head, trunk.hidden, "ntp")]
        blocks = list(extra.blocks) if extra is not None else []
        heads += [(extra_head(block, t[f"targets_h{i}"]), trunk.last_input, f"h{i}")
                  for i, block in zip(self.horizons, blocks)]
        sums: dict[str, Tensor] = {}
        for head, head_input, name in heads:
            if self.params.sequential_backward and torch.is_grad_enabled():
                loss, correct = checkpoint(head, head_input, use_reentrant=False)
            else:
                loss, correct = head(head_input)
            sums[f"loss/{name}"], sums[f"acc/{name}"] = loss, correct
        return LossOutput(sums=sums)

    def loss_weights(self) -> dict[str, float]:
        """``(1 - a) * L_ntp + a * mean_i L_i``; plain next-token prediction when there is no extra head."""
        if self.params.n_future == 1:
            return {"loss/ntp": 1.0}
        weights = {"loss/ntp": 1.0 - self.params.a}
        weights.update({f"loss/h{i}": self.params.a / len(self.horizons) for i in self.horizons})
        return weights

    def export(self, model: nn.Module, extra: nn.Module | None) -> nn.Module:
        return model

    def save_extra(self, extra: nn.Module, directory: Path) -> None:
        save_heads(extra, directory, self.name, self.params)

    def make_drafter(self, model: nn.Module, extra: nn.Module | None, k: int) -> HeadsDrafter | None:
        return heads_drafter(HeadsDrafter, model, extra.blocks if extra is not None else None, k)


class HeadsDrafter:
    """Self-speculative drafting with the extra heads (a :class:`mtp_bench.api.method.Drafter`): every verifier
    forward also runs each head's layer on the last layer's input (each head keeps its own KV cache); after
    acceptance, head i drafts x_{t+i} from the last accepted position."""

    def __init__(self, model: nn.Module, blocks: list[nn.Module]):
        self.model, self.blocks, self.max_drafts = model, blocks, len(blocks)
        self.anat = anatomy(model)
        self.caches: list[Any] = []
        self.hidden: list[Tensor] = []
        self.past_length = 0

    @torch.inference_mode()
    def forward(self, input_ids: Tensor, cache: Any, past_length: int, prefill: bool = False,
                bidirectional: bool = False) -> Tensor:
        if past_length == 0:
            self.caches = [new_cache() for _ in self.blocks]
        logits, capture = verifier_forward(self.anat, input_ids, cache, past_length, bidirectional)
        self.hidden = [run_layer(block, capture.input, capture.arguments, head_cache)[0]
                       for block, head_cache in zip(self.blocks, self.caches)]
        self.past_length = past_length
        return logits

    @torch.inference_mode()
    def accept(self, kept: int, next_token: int) -> list[int]:
        for head_cache in self.caches:
            crop_cache(head_cache, self.past_length + kept)
        last = torch.stack([hidden[kept - 1] for hidden in self.hidden])
        return self.anat.logits(self.anat.final_norm(last)).argmax(-1).tolist()
