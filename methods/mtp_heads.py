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

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mtp_bench.api import (
    LossOutput,
    MethodContext,
    ModelBatch,
    TokenBatch,
    count_targets,
    future_targets,
    plain_forward_inputs,
)
from mtp_bench.models.anatomy import (
    anatomy,
    cache_keyword,
    capture_last_layer,
    crop_cache,
    decode_inputs,
    heads_config,
    load_heads_state,
    new_block,
    new_cache,
    run_layer,
    run_trunk,
    save_heads,
    target_loss,
)


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
    folder, params = heads_config(directory, MultiTokenHeads.name)
    settings = MTPHeadsParams.model_validate({**params, "init": "last_block"})  # weights are overwritten anyway
    return load_heads_state(build_heads(model, settings), folder)


class MultiTokenHeads:
    name: ClassVar[str] = "mtp_heads"
    Params: ClassVar[type] = MTPHeadsParams

    def __init__(self, params: MTPHeadsParams, context: MethodContext):
        self.params = params
        self.context = context

    @property
    def horizons(self) -> range:
        return range(2, self.params.n_future + 1)

    def prepare(self, model: nn.Module, tokenizer: Any) -> nn.Module | None:
        return build_heads(model, self.params) if self.params.n_future > 1 else None

    def transform(self, batch: TokenBatch, generator: torch.Generator) -> ModelBatch:
        tensors = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        counts: dict[str, Tensor | int] = {}
        for horizon in range(1, self.params.n_future + 1):
            targets = future_targets(batch.labels, horizon)
            name = "ntp" if horizon == 1 else f"h{horizon}"
            tensors[f"targets_{name}"] = targets
            counts[f"loss/{name}"] = counts[f"acc/{name}"] = count_targets(targets)
        if batch.bidirectional_prompt:
            tensors["prompt_lengths"] = batch.prompt_lengths
        return ModelBatch(tensors=tensors, counts=counts, n_tokens=batch.n_real_tokens)

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
        if not blocks:
            return LossOutput(sums=sums, weights={"loss/ntp": 1.0})
        weights = {"loss/ntp": 1.0 - self.params.a}
        weights.update({f"loss/h{i}": self.params.a / len(blocks) for i in self.horizons})
        return LossOutput(sums=sums, weights=weights)

    def export(self, model: nn.Module, extra: nn.Module | None) -> nn.Module:
        return model

    def save_extra(self, extra: nn.Module, directory: Path) -> None:
        save_heads(extra, directory, self.name, self.params.model_dump(mode="json"))

    def make_drafter(self, model: nn.Module, extra: nn.Module | None, k: int) -> HeadsDrafter | None:
        if extra is None or k < 1:
            return None
        return HeadsDrafter(model, list(extra.blocks)[:k])


class HeadsDrafter:
    """Self-speculative drafting with the extra heads (a :class:`mtp_bench.api.Drafter`): every verifier forward
    also runs each head's layer on the last layer's input (each head keeps its own KV cache); after acceptance,
    head i drafts x_{t+i} from the last accepted position."""

    def __init__(self, model: nn.Module, blocks: list[nn.Module]):
        self.model, self.blocks, self.max_drafts = model, blocks, len(blocks)
        self.anat = anatomy(model)
        self.cache_keyword = cache_keyword(model)
        self.caches: list[Any] = []
        self.hidden: list[Tensor] = []
        self.past_length = 0

    @torch.inference_mode()
    def forward(self, input_ids: Tensor, cache: Any, past_length: int, prefill: bool = False,
                bidirectional: bool = False) -> Tensor:
        if past_length == 0:
            self.caches = [new_cache() for _ in self.blocks]
        with capture_last_layer(self.anat) as capture:
            logits = self.model(**decode_inputs(self.model, input_ids, past_length, bidirectional),
                                **{self.cache_keyword: cache}, use_cache=True).logits[0]
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
