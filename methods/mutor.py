"""MuToR (Gerontopoulos, Komodakis, Gidaris, "Multi-Token Prediction Needs Registers", arXiv 2505.10518).

Learned register tokens are added to the training sequence; the register placed after token x_t predicts x_{t+d},
with d drawn once per sequence from {d_min..d_max}. Real tokens never attend to registers and keep their positions,
so the real-token path is exactly the plain causal LM: at inference the registers are dropped and nothing is added.

    loss = (1 - a) * L_ntp + a * L_reg        (each a token mean over the effective batch, through the LM head)

How this file realises the paper for any Hugging Face causal LM that takes a 4D mask and ``position_ids``:

- One shared register vector (the paper's single ``<reg>`` embedding) lives in the method's ``extra`` module and is
  injected through ``inputs_embeds``. It is not a vocabulary row, so it never becomes an output class under tied
  embeddings, stays trainable under LoRA, and the exported model is the base model unchanged.
- Layout: registers are *appended* after the real tokens (one slot each) instead of interleaved; their position ids
  and the 4D mask say where they "are". The maths equals interleaving (a register is seen by no other token, so its
  slot order is irrelevant), real tokens keep their indices, and all indexing is a handful of vectorised gathers.
  Registers whose target runs past the sequence get no slot at all (the official code keeps them, ignored).
- Which registers: one after every x_t whose successor x_{t+1} is a training target (answer tokens in fine-tuning,
  so none in the prompt; every token but the first in pretraining), kept if x_{t+d} is a target too; or, with
  ``registers_per_sequence``, that many drawn at random among those (the paper's sparse registers).
- Positions (verified against the official code, ``process_input_and_labels_mutor`` in
  github.com/nasosger/MuToR, language_modeling/src/finetune.py: register before answer token j gets position
  ``question_length + j + offset - 1`` with ``offset = d - 1``): the register after x_t (0-based) gets position id
  ``t + d - 1``, the position of x_{t+d-1}, whose next-token prediction has the same target. With d = 1 it shares
  position and target with the NTP prediction at x_t. That is the paper's "t + d - 1" with 1-based token indices.
- Attention: real tokens see real tokens only (causal, or the bidirectional prompt block); a register sees exactly
  what its anchor x_t sees, plus itself, and no other register. Sliding-window layers keep their window (a custom
  4D mask would otherwise silently lift it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from mtp_bench.api import (
    IGNORE_INDEX,
    LossOutput,
    MethodContext,
    ModelBatch,
    TokenBatch,
    allowed_attention,
    as_input_embedding,
    correct_sum,
    count_targets,
    cross_entropy_sum,
    model_attention_mask,
    shifted_targets,
    sliding_window,
)
from mtp_bench.models.anatomy import RegisterDrafter

MASK_IMPLEMENTATIONS = ("eager", "sdpa")  # attention kernels that read an arbitrary 4D mask


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

    registers_per_sequence: int | None = Field(default=None, ge=1)
    """Sparse registers: this many per sequence at random positions among the eligible ones (the paper's image
    experiments). None: a register before every target token (dense, the paper's language setting)."""

    @model_validator(mode="after")
    def _offsets_ordered(self) -> MuToRParams:
        if self.d_min > self.d_max:
            raise ValueError(f"d_min ({self.d_min}) must not exceed d_max ({self.d_max})")
        return self


class RegisterEmbedding(nn.Module):
    """The one learned input vector shared by every register (the paper's ``<reg>`` token embedding)."""

    def __init__(self, vector: Tensor):
        super().__init__()
        self.register = nn.Parameter(vector.detach().clone())


# --------------------------------------------------------------------------------------- register layout ----
# Plain functions over tensors, so that other users (e.g. a register-based drafter) can build the same inputs.


@dataclass
class RegisterLayout:
    """Registers of a right-padded batch, compacted to ``R`` slots per row (appended after the ``T`` real tokens).

    The register in slot r of row b sits after real token ``anchors[b, r]`` and predicts the token ``offsets[b, r]``
    steps after it; slots with ``valid`` False are padding (they attend to themselves only and have no target).
    """

    anchors: Tensor  # [B, R] long
    offsets: Tensor  # [B, R] long
    valid: Tensor  # [B, R] bool

    @property
    def positions(self) -> Tensor:
        """Position id of each register: that of x_{t+d-1} (see the module docstring); 0 on padding slots."""
        return torch.where(self.valid, self.anchors + self.offsets - 1, torch.zeros_like(self.anchors))

    @property
    def count(self) -> int:
        return self.anchors.size(1)


def select_registers(
    labels: Tensor,
    offsets: Tensor,
    registers_per_sequence: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[RegisterLayout, Tensor]:
    """The registers of a batch and their targets (``IGNORE_INDEX`` on padding slots).

    ``labels`` [B, T] as in :class:`TokenBatch`; ``offsets`` [B] the d of each sequence. A register goes after every
    x_t whose successor is a target and whose x_{t+d} is a target, or (sparse) after ``registers_per_sequence`` of
    those drawn with ``generator``.
    """
    bsz, length = labels.shape
    device = labels.device
    steps = torch.arange(length, device=device)
    target_index = steps[None, :] + offsets[:, None]  # [B, T]
    targets = labels.gather(1, target_index.clamp(max=length - 1))
    targets = torch.where(target_index < length, targets, IGNORE_INDEX)
    eligible = (shifted_targets(labels) != IGNORE_INDEX) & (targets != IGNORE_INDEX)
    if registers_per_sequence is not None and length > 0:
        scores = torch.rand(bsz, length, generator=generator, device=device).masked_fill(~eligible, 2.0)
        chosen = scores.topk(min(registers_per_sequence, length), dim=1, largest=False).indices
        eligible = torch.zeros_like(eligible).scatter_(1, chosen, eligible.gather(1, chosen))
    per_row = eligible.sum(1)
    slots = int(per_row.max()) if bsz else 0
    # A stable sort puts each row's chosen anchors first, in sequence order.
    anchors = torch.sort((~eligible).to(torch.int8), dim=1, stable=True).indices[:, :slots]
    valid = torch.arange(slots, device=device)[None, :] < per_row[:, None]
    anchors = torch.where(valid, anchors, torch.zeros_like(anchors))
    register_targets = torch.where(valid, targets.gather(1, anchors), IGNORE_INDEX)
    layout = RegisterLayout(anchors=anchors, offsets=offsets[:, None].expand(bsz, slots), valid=valid)
    return layout, register_targets


def trailing_registers(attention_mask: Tensor, offsets: list[int]) -> RegisterLayout:
    """Registers after the last real token of each right-padded row, one per offset (e.g. ``[2, 3, 4]`` to draft
    x_{t+2..t+4} beside the model's own next-token prediction): the inputs a register-based drafter needs."""
    bsz = attention_mask.size(0)
    last = (attention_mask.sum(1) - 1).clamp(min=0)
    device = attention_mask.device
    return RegisterLayout(
        anchors=last[:, None].expand(bsz, len(offsets)),
        offsets=torch.tensor(offsets, dtype=torch.long, device=device)[None, :].expand(bsz, len(offsets)),
        valid=torch.ones(bsz, len(offsets), dtype=torch.bool, device=device),
    )


def attention_with_registers(real_allowed: Tensor, layout: RegisterLayout) -> Tensor:
    """Boolean [B, T+R, T+R] mask (True = may attend) from the real tokens' [B, T, T] mask: real tokens never see
    registers; a register sees what its anchor sees, and itself."""
    bsz, length, _ = real_allowed.shape
    slots = layout.count
    allowed = real_allowed.new_zeros(bsz, length + slots, length + slots)  # real -> register stays False
    allowed[:, :length, :length] = real_allowed
    rows = layout.anchors[:, :, None].expand(bsz, slots, length)
    allowed[:, length:, :length] = real_allowed.gather(1, rows) & layout.valid[:, :, None]
    allowed[:, length:, length:] = torch.eye(slots, dtype=torch.bool, device=real_allowed.device)
    return allowed


def kernel_attention_masks(
    real_allowed: Tensor, layout: RegisterLayout, model: nn.Module
) -> Tensor | dict[str, Tensor]:
    """The 4D mask(s) to pass as ``attention_mask``. Hugging Face uses a custom 4D mask as-is for every layer, so
    for sliding-window models (Gemma 2/3, Mistral, Qwen2 with ``use_sliding_window``) the window is applied here:
    to the real tokens exactly as Hugging Face does (query i sees key j only if i - j < window), and registers
    inherit it from their anchor. Models with both layer kinds get one mask per kind, keyed as their forward reads."""
    full = model_attention_mask(attention_with_registers(real_allowed, layout), model)
    window = sliding_window(model)
    if window is None:
        return full
    index = torch.arange(real_allowed.size(1), device=real_allowed.device)
    near = (index[:, None] - index[None, :]) < window
    sliding = model_attention_mask(attention_with_registers(real_allowed & near, layout), model)
    if getattr(model.config, "layer_types", None) is None:
        return sliding  # every layer slides
    return {"full_attention": full, "sliding_attention": sliding}


def register_forward_inputs(
    model: nn.Module,
    register: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor,
    layout: RegisterLayout,
    prompt_lengths: Tensor | None = None,
) -> dict[str, Any]:
    """Forward arguments for real tokens followed by the layout's register slots: ``inputs_embeds`` (token
    embeddings, then the register vector), ``position_ids`` and the 4D mask in the form the model's kernel reads.
    ``prompt_lengths`` turns on the bidirectional prompt block."""
    bsz, length = input_ids.shape
    embedding = model.get_input_embeddings()
    embeddings = embedding(input_ids)
    registers = as_input_embedding(register, embedding, embeddings.dtype).expand(bsz, layout.count, -1)
    real_positions = torch.arange(length, device=input_ids.device).expand(bsz, length)
    return {
        "inputs_embeds": torch.cat([embeddings, registers], dim=1),
        "position_ids": torch.cat([real_positions, layout.positions], dim=1),
        "attention_mask": kernel_attention_masks(allowed_attention(attention_mask, prompt_lengths), layout, model),
    }


# ------------------------------------------------------------------------------------------------ method ----


class MuToR:
    name: ClassVar[str] = "mutor"
    Params: ClassVar[type] = MuToRParams

    def __init__(self, params: MuToRParams, context: MethodContext):
        self.params = params
        self.context = context

    @property
    def offsets(self) -> range:
        return range(self.params.d_min, self.params.d_max + 1)

    def prepare(self, model: nn.Module, tokenizer: Any) -> nn.Module:
        implementation = getattr(model.config, "_attn_implementation", None) or "eager"
        if implementation not in MASK_IMPLEMENTATIONS:
            raise ValueError(
                f"mutor needs an attention kernel that takes a 4D mask ({' or '.join(MASK_IMPLEMENTATIONS)}); "
                f"the model uses {implementation!r}: set model.attn_implementation"
            )
        weight = model.get_input_embeddings().weight.detach()
        if self.params.register_init == "mean":
            vector = weight.float().mean(0)
        else:
            # A forked RNG: drawing here must not shift what is drawn later (e.g. LoRA init), or NTP and MuToR
            # trials of one seed would start from different adapters.
            with torch.random.fork_rng(devices=[]):
                vector = torch.randn(weight.size(1)) * weight.float().std()
        return RegisterEmbedding(vector.to(device=weight.device, dtype=weight.dtype))

    def transform(self, batch: TokenBatch, generator: torch.Generator) -> ModelBatch:
        device = batch.input_ids.device
        bsz = batch.input_ids.size(0)
        d = torch.randint(self.params.d_min, self.params.d_max + 1, (bsz,), generator=generator, device=device)
        layout, register_targets = select_registers(batch.labels, d, self.params.registers_per_sequence, generator)
        targets = shifted_targets(batch.labels)
        n_targets = count_targets(targets)
        n_registers = layout.valid.sum()
        per_offset = torch.bincount(layout.offsets[layout.valid], minlength=self.params.d_max + 1)
        counts: dict[str, Tensor | int] = {
            "loss/ntp": n_targets, "acc/ntp": n_targets, "loss/reg": n_registers, "acc/reg": n_registers
        }
        for offset in self.offsets:
            counts[f"loss/h{offset}"] = counts[f"acc/h{offset}"] = per_offset[offset]
        tensors = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "targets": targets,
            "anchors": layout.anchors,
            "offsets": layout.offsets,
            "register_valid": layout.valid,
            "register_targets": register_targets,
        }
        if batch.bidirectional_prompt:
            tensors["prompt_lengths"] = batch.prompt_lengths
        # The 4D mask is built in ``loss``, not here: the loop transforms every micro-batch of a step up front.
        return ModelBatch(tensors=tensors, counts=counts, n_tokens=batch.n_real_tokens + int(n_registers))

    def logits(self, model: nn.Module, extra: nn.Module, batch: ModelBatch) -> tuple[Tensor, Tensor]:
        """(real-token logits [B, T, V], register logits [B, R, V]) of one forward pass."""
        t = batch.tensors
        layout = RegisterLayout(anchors=t["anchors"], offsets=t["offsets"], valid=t["register_valid"])
        inputs = register_forward_inputs(
            model, extra.register, t["input_ids"], t["attention_mask"], layout, t.get("prompt_lengths")
        )
        logits = model(**inputs, use_cache=False).logits
        length = t["input_ids"].size(1)
        return logits[:, :length], logits[:, length:]

    def loss(self, model: nn.Module, extra: nn.Module | None, batch: ModelBatch) -> LossOutput:
        if extra is None:
            raise ValueError("mutor.loss needs the RegisterEmbedding that mutor.prepare returned")
        t = batch.tensors
        real_logits, register_logits = self.logits(model, extra, batch)
        register_targets, valid, offsets = t["register_targets"], t["register_valid"], t["offsets"]
        # Per-register losses once, then summed per offset: one log-softmax over the register logits, not one per d.
        per_register = F.cross_entropy(
            register_logits.reshape(-1, register_logits.size(-1)).float(),
            register_targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="none",
        ).view_as(register_targets)
        correct = (register_logits.detach().argmax(-1) == register_targets) & valid
        sums = {
            "loss/ntp": cross_entropy_sum(real_logits, t["targets"]),
            "acc/ntp": correct_sum(real_logits, t["targets"]),
            "loss/reg": per_register.sum(),
            "acc/reg": correct.sum(),
        }
        for offset in self.offsets:
            selected = valid & (offsets == offset)
            sums[f"loss/h{offset}"] = (per_register * selected).sum()
            sums[f"acc/h{offset}"] = (correct & selected).sum()
        weights = {"loss/ntp": 1.0 - self.params.a, "loss/reg": self.params.a}
        return LossOutput(sums=sums, weights=weights)

    def make_drafter(self, model: nn.Module, extra: nn.Module | None, k: int) -> RegisterDrafter | None:
        """Registers as drafters: after the last accepted x_t, registers at positions t+d-1 draft x_{t+d} for
        d = 2..k+1 (the training layout), limited to the offsets the register was trained on."""
        drafts = min(k, self.params.d_max - 1)
        if extra is None or drafts < 1 or self.params.d_min > 2:
            return None
        return RegisterDrafter(model, extra.register, drafts)

    def export(self, model: nn.Module, extra: nn.Module | None) -> nn.Module:
        return model  # registers are a training device only: the plain causal LM, unchanged
