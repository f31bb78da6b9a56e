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

from mtp_bench.api.batches import IGNORE_INDEX
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
    sequences, offsets drawn with ``generator``. ``per_register``: every anchor draws uniformly among the offsets whose
    target cell is inside the grid (so every anchor that can have a register gets one; near the bottom and right
    edges fewer offsets fit). Else one offset per row, uniform over ``offsets_2d``; anchors where it leaves the grid
    get no register, as text MuToR drops one past the end. Then all are kept, or ``registers_per_sequence`` of them
    drawn at random (sparse)."""
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
    fits = (  # [B, T, K]: the offset's target cell is inside the grid
        is_anchor[:, :, None]
        & (row[:, :, None] + table[:, 0] < height)
        & (column[:, :, None] + table[:, 1] >= 0)
        & (column[:, :, None] + table[:, 1] < width)
    )
    if per_register:  # uniform over the offsets that fit at this anchor: the smallest random score among them
        scores = torch.rand(fits.shape, generator=generator, device=device).masked_fill(~fits, 2.0)
        offset_ids = scores.argmin(-1)
        eligible = fits.any(-1)
    else:  # one offset per row; anchors where it does not fit get no register
        offset_ids = torch.randint(len(offsets_2d), (bsz,), generator=generator, device=device)[:, None]
        offset_ids = offset_ids.expand(bsz, length)
        eligible = fits.gather(2, offset_ids[:, :, None]).squeeze(2)
    distance = table[offset_ids, 0] * width + table[offset_ids, 1]  # raster steps from anchor to target
    target_index = (steps[None, :] + distance).clamp(0, length - 1)
    targets = labels.gather(1, target_index)
    eligible = eligible & (targets != IGNORE_INDEX)
    layout, register_targets = compact_registers(eligible, distance, targets, registers_per_sequence, generator)
    slot_offset_ids = torch.where(layout.valid, offset_ids.gather(1, layout.anchors), 0)
    return layout, register_targets, slot_offset_ids
