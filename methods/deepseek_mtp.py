"""DeepSeek-V3 multi-token prediction (DeepSeek-AI, "DeepSeek-V3 Technical Report", 2024, section 2.2).

D sequential modules keep the full causal chain: module k at position i combines the previous depth's hidden state
h^{k-1}_i (h^0: the last decoder layer's output, before the final norm) with the embedding of token t_{i+k},

    h'_i = M_k [RMSNorm(h^{k-1}_i) ; RMSNorm(Emb(t_{i+k}))]      (M_k: a 2d -> d projection)
    h^k  = TRM_k(h')                                              (one decoder layer of the model's architecture)

and predicts t_{i+k+1} through its output norm and the model's shared LM head (embeddings shared too).

    loss = L_ntp + (lambda / D) * sum_k L_k        (each a token mean; lambda 0.3 as in DeepSeek-V3's early training)

Choices where the report is silent for fine-tuning: the layer starts as a copy of the model's last layer (or fresh,
``init``); each module has its own output norm, initialised from the model's final norm (as in the released
DeepSeek-V3 weights' ``shared_head.norm``). With a bidirectional prompt, module k's positions i < P - k (whose inputs
hold only prompt tokens) attend to each other both ways and the rest causally, so no position sees its target.
Export is the plain model; modules are saved beside it and reloaded with :func:`load_modules`. They draft for
self-speculative decoding as in DeepSeek-V3's own use: module k drafts x_{t+k+1} from module k-1's output and the
previous draft (:class:`DeepSeekDrafter`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtp_bench.api.anatomy import Anatomy, anatomy, last_layer_mask, layer_arguments, new_block, run_layer, run_trunk
from mtp_bench.api.batches import LossOutput, ModelBatch, TokenBatch
from mtp_bench.api.decoding import crop_cache, new_cache, verifier_forward
from mtp_bench.api.heads import heads_drafter, horizon_batch, load_saved_heads, save_heads
from mtp_bench.api.masks import allowed_attention, plain_forward_inputs
from mtp_bench.api.method import MethodContext, required_extra
from mtp_bench.api.targets import target_loss
from mtp_bench.methods.deepseek_mtp_params import DeepSeekMTPParams


class DeepSeekModule(nn.Module):
    """One MTP module: input norms, the 2d -> d projection, a decoder layer, an output norm."""

    def __init__(self, anat: Anatomy, init: str):
        super().__init__()
        size, eps = anat.hidden_size, anat.norm_eps
        reference = anat.embed_tokens.weight
        self.hidden_norm = nn.RMSNorm(size, eps=eps)
        self.embed_norm = nn.RMSNorm(size, eps=eps)
        self.projection = nn.Linear(2 * size, size, bias=False)
        anat.model._init_weights(self.projection)
        self.block = new_block(anat, init)
        self.output_norm = copy.deepcopy(anat.final_norm).requires_grad_(True)
        for part in (self.hidden_norm, self.embed_norm, self.projection):
            part.to(device=reference.device, dtype=reference.dtype)

    def combine(self, hidden: Tensor, embedded: Tensor) -> Tensor:
        return self.projection(torch.cat([self.hidden_norm(hidden), self.embed_norm(embedded)], dim=-1))


class DeepSeekModules(nn.Module):
    def __init__(self, modules: list[DeepSeekModule]):
        super().__init__()
        self.depths = nn.ModuleList(modules)


def build_modules(model: nn.Module, params: DeepSeekMTPParams) -> DeepSeekModules:
    anat = anatomy(model)
    with torch.random.fork_rng(devices=[]):  # must not shift what the trial draws later (LoRA)
        return DeepSeekModules([DeepSeekModule(anat, params.init) for _ in range(params.depth)])


def load_modules(model: nn.Module, directory: Path) -> DeepSeekModules:
    """The modules saved beside an export (its folder or its ``extra`` subfolder), rebuilt for ``model``."""
    return load_saved_heads(model, directory, DeepSeekMTP.name, DeepSeekMTPParams, build_modules)


def shifted_ids(input_ids: Tensor, k: int) -> Tensor:
    """Tokens k steps ahead: position i holds t_{i+k} (0 past the end, where no target is ever read)."""
    return torch.cat([input_ids[:, k:], input_ids.new_zeros(input_ids.size(0), min(k, input_ids.size(1)))], dim=1)


@dataclass(eq=False)
class DeepSeekMTP:
    params: DeepSeekMTPParams
    context: MethodContext
    name: ClassVar[str] = "deepseek_mtp"
    Params: ClassVar[type] = DeepSeekMTPParams

    def prepare(self, model: nn.Module, tokenizer: Any) -> nn.Module:
        return build_modules(model, self.params)

    def transform(self, batch: TokenBatch, generator: torch.Generator) -> ModelBatch:
        model_batch = horizon_batch(batch, self.params.depth + 1)
        for k in range(1, self.params.depth + 1):
            model_batch.tensors[f"ids_ahead_{k}"] = shifted_ids(batch.input_ids, k)
        return model_batch

    def depth_outputs(self, model: nn.Module, extra: nn.Module, tensors: dict[str, Tensor]) -> tuple[Any, list[Tensor]]:
        """(the trunk's pass, h^k of every module k): one trunk forward, then the modules in sequence."""
        t = tensors
        prompt_lengths = t.get("prompt_lengths")
        trunk = run_trunk(model, plain_forward_inputs(t["input_ids"], t["attention_mask"], model, prompt_lengths))
        anat = anatomy(model)
        hidden, outputs = trunk.last_output, []
        for k, module in enumerate(extra.depths, start=1):
            arguments = trunk.layer_arguments
            if prompt_lengths is not None:  # positions i < P - k hold prompt tokens only: they alone see both ways
                allowed = allowed_attention(t["attention_mask"], (prompt_lengths - k).clamp(min=0))
                positions = torch.arange(allowed.size(-1), device=allowed.device).expand(allowed.size(0), -1)
                # keeps a sliding last layer's window
                arguments = {**arguments, "attention_mask": last_layer_mask(anat, allowed, positions)}
            combined = module.combine(hidden, anat.embed(t[f"ids_ahead_{k}"]))
            hidden = run_layer(module.block, combined, arguments)
            outputs.append(hidden)
        return trunk, outputs

    def loss(self, model: nn.Module, extra: nn.Module | None, batch: ModelBatch) -> LossOutput:
        extra = required_extra(extra, self.name, "modules")
        t = batch.tensors
        anat = anatomy(model)
        trunk, outputs = self.depth_outputs(model, extra, t)
        loss, correct = target_loss(anat.logits, trunk.hidden, t["targets_ntp"])
        sums = {"loss/ntp": loss, "acc/ntp": correct}
        for k, (module, hidden) in enumerate(zip(extra.depths, outputs), start=1):
            loss, correct = target_loss(anat.logits, module.output_norm(hidden), t[f"targets_h{k + 1}"])
            sums[f"loss/h{k + 1}"], sums[f"acc/h{k + 1}"] = loss, correct
        return LossOutput(sums=sums)

    def loss_weights(self) -> dict[str, float]:
        """``L_ntp + (lambda / D) * sum_k L_k``."""
        weights = {"loss/ntp": 1.0}
        weights.update({f"loss/h{k + 1}": self.params.weight / self.params.depth
                        for k in range(1, self.params.depth + 1)})
        return weights

    def export(self, model: nn.Module, extra: nn.Module | None) -> nn.Module:
        return model

    def save_extra(self, extra: nn.Module, directory: Path) -> None:
        save_heads(extra, directory, self.name, self.params)

    def make_drafter(self, model: nn.Module, extra: nn.Module | None, k: int) -> DeepSeekDrafter | None:
        return heads_drafter(DeepSeekDrafter, model, extra.depths if extra is not None else None, k)


class DeepSeekDrafter:
    """Self-speculative drafting with the MTP modules (a :class:`mtp_bench.api.method.Drafter`).

    Module k at position i needs t_{i+k}, so it can process a position for good only once that token is accepted;
    its KV cache holds those positions, and its outputs there are kept for module k+1. To draft after the last
    accepted position t, module 1 reads the verifier's next token, module k the draft of module k-1; those
    speculative positions are computed and then cropped from the module caches.
    """

    def __init__(self, model: nn.Module, modules: list[DeepSeekModule]):
        self.model, self.modules, self.max_drafts = model, modules, len(modules)
        self.anat = anatomy(model)
        self._reset(0, False)

    def _reset(self, prompt_length: int, bidirectional: bool) -> None:
        self.tokens: list[int] = []
        self.real: list[Tensor | None] = [None] * (len(self.modules) + 1)  # depth -> outputs at settled positions
        self.caches = [new_cache() for _ in self.modules]
        self.prompt_length, self.bidirectional = prompt_length, bidirectional

    @torch.inference_mode()
    def forward(self, input_ids: Tensor, cache: Any, past_length: int, prefill: bool = False,
                bidirectional: bool = False) -> Tensor:
        if past_length == 0:
            self._reset(input_ids.numel(), bidirectional)
        logits, capture = verifier_forward(self.anat, input_ids, cache, past_length, bidirectional)
        self.new_tokens, self.new_hidden, self.past_length = input_ids.tolist(), capture.output[0], past_length
        return logits

    def _settled(self, depth: int) -> int:
        settled = self.real[depth]
        return 0 if settled is None else settled.size(0)

    def _keep(self, depth: int, outputs: Tensor) -> None:
        settled = self.real[depth]
        self.real[depth] = outputs if settled is None else torch.cat([settled, outputs])

    def _allowed(self, start: int, end: int, k: int, device: torch.device) -> Tensor:
        """Which of positions [0, end) the queries [start, end) may see: causal, plus the training-time
        bidirectional block of positions below prompt_length - k."""
        queries = torch.arange(start, end, device=device)[:, None]
        keys = torch.arange(end, device=device)[None, :]
        allowed = keys <= queries
        if self.bidirectional:
            block = self.prompt_length - k
            allowed = allowed | ((queries < block) & (keys < block))
        return allowed[None]

    @torch.inference_mode()
    def accept(self, kept: int, next_token: int) -> list[int]:
        past = self.past_length
        self.tokens = [*self.tokens[:past], *self.new_tokens[:kept], next_token]
        settled0 = self.real[0][:past] if self.real[0] is not None else None
        self.real[0] = self.new_hidden[:kept] if settled0 is None else torch.cat([settled0, self.new_hidden[:kept]])
        n = len(self.tokens)  # the verifier has settled positions 0..n-2; token n-1 is its next one
        device = self.new_hidden.device
        drafts: list[int] = []
        speculative_below = self.new_hidden[:0]
        for k, module in enumerate(self.modules, start=1):
            start = self._settled(k)
            below = torch.cat([self.real[k - 1][start:], speculative_below])  # h^{k-1} at positions start..n-2
            ahead = [self.tokens[i + k] if i + k < n else drafts[i + k - n] for i in range(start, n - 1)]
            combined = module.combine(below, self.anat.embed(torch.tensor(ahead, device=device)))[None]
            positions = torch.arange(start, n - 1, device=device)[None]
            arguments = layer_arguments(self.anat, combined, positions, self._allowed(start, n - 1, k, device))
            outputs = run_layer(module.block, combined, arguments, self.caches[k - 1])[0]
            settled = max(n - k - start, 0)  # positions whose t_{i+k} is known
            self._keep(k, outputs[:settled])
            crop_cache(self.caches[k - 1], start + settled)
            speculative_below = outputs[settled:]
            drafts.append(int(self.anat.logits(module.output_norm(outputs[-1])).argmax()))
        return drafts
