"""MuToR's register layout as plain functions over tensors: which registers a batch gets and their targets, where
they sit in the model's input (each row's registers packed right after its own real tokens), the attention mask that
places them, and the forward arguments. Used by the method (:mod:`mtp_bench.methods.mutor`) for training and by its
register drafter; the method's module docstring explains the layout's maths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtp_bench.api.anatomy import as_input_embedding
from mtp_bench.api.batches import IGNORE_INDEX
from mtp_bench.api.masks import allowed_attention, narrow_to_window, sliding_window, windowed_masks
from mtp_bench.api.targets import shifted_targets


@dataclass
class RegisterLayout:
    """Registers of a right-padded batch, compacted to ``R`` slots per row, the valid ones first.

    The register in slot r of row b sits after real token ``anchors[b, r]`` and predicts the token ``offsets[b, r]``
    steps after it; slots with ``valid`` False are padding (they attend to themselves only and have no target).
    """

    anchors: Tensor  # [B, R] long
    offsets: Tensor  # [B, R] long
    valid: Tensor  # [B, R] bool

    @property
    def positions(self) -> Tensor:
        """Position id of each register: that of x_{t+d-1} (see :mod:`mtp_bench.methods.mutor`); 0 on padding slots."""
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

    ``labels`` [B, T] as in :class:`TokenBatch`; ``offsets`` the d of each sequence [B], or of each anchor [B, T]
    (one draw per register). A register goes after every x_t whose successor is a target and whose x_{t+d} is a
    target, or (sparse) after ``registers_per_sequence`` of those drawn with ``generator``.
    """
    bsz, length = labels.shape
    steps = torch.arange(length, device=labels.device)
    per_anchor = offsets if offsets.dim() == 2 else offsets[:, None].expand(bsz, length)
    target_index = steps[None, :] + per_anchor  # [B, T]
    targets = labels.gather(1, target_index.clamp(max=length - 1))
    targets = torch.where(target_index < length, targets, IGNORE_INDEX)
    eligible = (shifted_targets(labels) != IGNORE_INDEX) & (targets != IGNORE_INDEX)
    return compact_registers(eligible, per_anchor, targets, registers_per_sequence, generator)


def compact_registers(
    eligible: Tensor,
    offsets: Tensor,
    targets: Tensor,
    registers_per_sequence: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[RegisterLayout, Tensor]:
    """Registers after the ``eligible`` [B, T] anchors (all, or ``registers_per_sequence`` of them drawn with
    ``generator``), compacted to slots: the layout and each slot's target. ``offsets`` and ``targets`` [B, T] give the
    1D distance d and the target of a register after each anchor (any layout: :mod:`mtp_bench.methods.mutor_grid`
    turns a 2D offset into its raster distance)."""
    bsz, length = eligible.shape
    device = eligible.device
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
    layout = RegisterLayout(anchors=anchors, offsets=offsets.gather(1, anchors), valid=valid)
    return layout, register_targets


@dataclass
class Placement:
    """Where real tokens and registers sit in the model's input of ``length`` columns: row b's real tokens in
    columns 0..n_b-1, its valid registers right after them (slot r in column n_b + r), padding after those."""

    length: int
    is_register: Tensor  # [B, L] bool
    slot: Tensor  # [B, L] long: the register slot of each column (clamped where is_register is False)
    source: Tensor  # [B, L] long: the real index whose attention a column copies (itself, a register's anchor), -1
    columns: Tensor  # [B, R] long: the column of each register slot (clamped on padding slots)


def place_registers(lengths: Tensor, layout: RegisterLayout, min_length: int) -> Placement:
    """Pack each row's registers after its ``lengths[b]`` real tokens; at least ``min_length`` columns."""
    bsz, slots = layout.anchors.shape
    per_row = layout.valid.sum(1)
    length = max(min_length, int((lengths + per_row).max())) if bsz else min_length
    device = layout.anchors.device
    columns = torch.arange(length, device=device)[None, :].expand(bsz, length)
    slot = columns - lengths[:, None]
    is_register = (slot >= 0) & (slot < per_row[:, None])
    slot = slot.clamp(0, max(slots - 1, 0))
    anchor = layout.anchors.gather(1, slot) if slots else torch.zeros_like(slot)
    is_real = columns < lengths[:, None]
    source = torch.where(is_real, columns, torch.where(is_register, anchor, -1))
    register_columns = (lengths[:, None] + torch.arange(slots, device=device)[None, :]).clamp(max=length - 1)
    return Placement(length, is_register, slot, source, register_columns)


def _real_lengths(attention_mask: Tensor | None, real_allowed: Tensor) -> Tensor:
    if attention_mask is None:  # every row as long as the tensor: registers after column T
        return torch.full((real_allowed.size(0),), real_allowed.size(1), dtype=torch.long, device=real_allowed.device)
    return attention_mask.sum(1)


def attention_with_registers(real_allowed: Tensor, layout: RegisterLayout,
                             attention_mask: Tensor | None = None) -> Tensor:
    """Boolean [B, L, L] mask (True = may attend) of the packed input (:func:`place_registers`; without
    ``attention_mask`` every row counts as T real tokens) from the real tokens' [B, T, T] mask: real tokens never see
    registers; a register sees what its anchor sees, and itself; padding sees itself."""
    bsz, length, _ = real_allowed.shape
    placement = place_registers(_real_lengths(attention_mask, real_allowed), layout, length)
    total = placement.length
    keys = F.pad(real_allowed, (0, total - length))  # [B, T, L]: no real query sees a column past T
    rows = placement.source.clamp(min=0)[:, :, None].expand(bsz, total, total)
    allowed = keys.gather(1, rows) & (placement.source >= 0)[:, :, None]
    return allowed | torch.eye(total, dtype=torch.bool, device=real_allowed.device)[None]


def kernel_attention_masks(real_allowed: Tensor, layout: RegisterLayout, model: nn.Module,
                           attention_mask: Tensor | None = None) -> Tensor | dict[str, Tensor]:
    """The 4D mask(s) to pass as ``attention_mask``. Sliding-window layers keep their window: the real tokens exactly
    as Hugging Face does (query i sees key j only if i - j < window), registers inherit it from their anchor."""
    full = attention_with_registers(real_allowed, layout, attention_mask)
    window = sliding_window(model)
    narrowed = None if window is None else attention_with_registers(
        narrow_to_window(real_allowed, window), layout, attention_mask)
    return windowed_masks(full, model, narrowed)


def register_forward_inputs(
    model: nn.Module,
    register: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor,
    layout: RegisterLayout,
    prompt_lengths: Tensor | None = None,
) -> dict[str, Any]:
    """Forward arguments for real tokens with each row's register slots packed after them (:func:`place_registers`):
    ``inputs_embeds`` (token embeddings, the register vector in register columns), ``position_ids`` and the 4D mask
    in the form the model's kernel reads. ``register``: one vector [d] for every register, or one per slot
    [B, R, d]. ``prompt_lengths`` turns on the bidirectional prompt block."""
    length = input_ids.size(1)
    placement = place_registers(attention_mask.sum(1), layout, length)
    embedding = model.get_input_embeddings()
    embeddings = F.pad(embedding(input_ids), (0, 0, 0, placement.length - length))
    registers = as_input_embedding(register, embedding, embeddings.dtype)
    if registers.dim() == 3:  # one vector per slot: the one of each register column's slot
        slot = placement.slot if layout.count else torch.zeros_like(placement.slot)
        registers = F.pad(registers, (0, 0, 0, max(1 - registers.size(1), 0)))
        registers = registers.gather(1, slot[:, :, None].expand(-1, -1, registers.size(-1)))
    columns = torch.arange(placement.length, device=input_ids.device)[None, :]
    positions = torch.where(placement.source >= 0, columns, 0)  # padding columns: 0, inside every position table
    if layout.count:
        positions = torch.where(placement.is_register, layout.positions.gather(1, placement.slot), positions)
    real_allowed = allowed_attention(attention_mask, prompt_lengths)
    return {
        "inputs_embeds": torch.where(placement.is_register[:, :, None], registers, embeddings),
        "position_ids": positions,
        "attention_mask": kernel_attention_masks(real_allowed, layout, model, attention_mask),
    }


