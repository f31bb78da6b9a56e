"""MuToR-2D's registers: which token of an image grid each register predicts, as plain functions over tensors.

An image sequence is a prompt ending in a class token, then ``height * width`` image tokens in raster order (then
whatever follows, e.g. EOS): the image tokens are the first ``height * width`` targets of the row. Image token j sits
at grid cell (j // width, j % width); the class token counts as the cell (0, -1) just left of the first image token,
so a register after it has a target only for offsets with dx >= 1 (with (0, 1) it shares NTP's target, image token 0,
as d = 1 does in text).

A register after the token at cell (r, c) with offset (dy, dx) predicts the token at (r + dy, c + dx), if that cell is
inside the grid. In raster order that token is ``dy * width + dx`` steps ahead, so a 2D register *is* a 1D register
with d = dy * width + dx (its position id, anchor + d - 1, and its attention follow from that unchanged): the result
is a :class:`RegisterLayout` whose ``offsets`` are those raster distances, plus each slot's index into the offset list
for the per-offset register embedding and metrics. See :mod:`mtp_bench.methods.mutor` for the choices and sources.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtp_bench.method.batches import IGNORE_INDEX
from mtp_bench.methods.mutor_layout import RegisterLayout, compact_registers


def grid_registers(
    labels: Tensor,
    grid: tuple[int, int],
    offsets_2d: list[tuple[int, int]],
    per_register: bool,
    registers_per_sequence: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[RegisterLayout, Tensor, Tensor]:
    """(layout, target of each slot, index into ``offsets_2d`` of each slot) for a right-padded batch of image
    sequences. Offsets are drawn uniformly from ``offsets_2d`` with ``generator``: one per anchor (``per_register``)
    or one per row; a register whose target falls outside the grid is dropped, as text MuToR drops one past the end.
    Then all the rest are kept, or ``registers_per_sequence`` of them drawn at random (sparse)."""
    bsz, length = labels.shape
    device = labels.device
    height, width = grid
    cells = height * width
    is_target = labels != IGNORE_INDEX
    n_targets = is_target.sum(1)
    short = (n_targets < cells).nonzero().flatten().tolist()
    if short:
        raise ValueError(
            f"mutor layout 2d: row {short[0]} of the batch has {int(n_targets[short[0]])} target tokens, fewer than the "
            f"{height} x {width} = {cells} image tokens of grid {list(grid)}; is grid the task's image size?"
        )
    start = is_target.int().argmax(1)  # first target: image token 0
    steps = torch.arange(length, device=device)
    image_index = steps[None, :] - start[:, None]  # -1 on the class token, 0..cells-1 on the image tokens
    is_anchor = (image_index >= -1) & (image_index < cells - 1)  # the last image token has nothing after it
    row = torch.where(image_index < 0, 0, image_index.div(width, rounding_mode="floor"))
    column = torch.where(image_index < 0, -1, image_index.remainder(width))

    table = torch.tensor(offsets_2d, dtype=torch.long, device=device)  # [K, 2]
    shape = (bsz, length) if per_register else (bsz,)
    drawn = torch.randint(len(offsets_2d), shape, generator=generator, device=device)
    offset_ids = drawn if per_register else drawn[:, None].expand(bsz, length)
    dy, dx = table[offset_ids, 0], table[offset_ids, 1]
    inside = (row + dy < height) & (column + dx >= 0) & (column + dx < width)
    distance = dy * width + dx  # raster steps from anchor to target
    target_index = (steps[None, :] + distance).clamp(0, length - 1)
    targets = labels.gather(1, target_index)
    eligible = is_anchor & inside & (targets != IGNORE_INDEX)
    layout, register_targets = compact_registers(eligible, distance, targets, registers_per_sequence, generator)
    slot_offset_ids = torch.where(layout.valid, offset_ids.gather(1, layout.anchors), 0)
    return layout, register_targets, slot_offset_ids
