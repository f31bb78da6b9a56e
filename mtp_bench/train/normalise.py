"""Loss normalisation: how the summed loss terms a method returns become one optimiser step's objective.

The loop trains on *units*: a unit is one micro-batch (``token``) or one sequence of it (``sequence``). A method
returns, per unit, summed losses and their target counts (see :mod:`mtp_bench.api.method`); every term k is
normalised the same way for every method:

    token:     term_k = (sum over units of sums_k) / (targets of k in the step)
    sequence:  term_k = (sum over units of sums_k / targets_k of that unit) / (units of the step with a target of k)

``token`` is a token mean over the effective batch (all micro-batches, all data-parallel ranks). ``sequence`` is the
official MuToR code's (batch size 1, gradient accumulation): each sequence's token mean per term, then the mean over
the step's sequences, so a short answer weighs as much as a long one. A sequence without a target of a term (e.g. no
register fits its answer) is left out of that term's mean rather than counted as zero.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mtp_bench.api.batches import ModelBatch, TokenBatch

TOKEN, SEQUENCE = "token", "sequence"


def split_sequences(batch: TokenBatch) -> list[TokenBatch]:
    """One batch per row, its right padding cut off (a causal model's real tokens never see it)."""
    rows = []
    for row, length in enumerate(batch.attention_mask.sum(1).tolist()):
        keep = slice(row, row + 1), slice(0, max(int(length), 1))
        rows.append(TokenBatch(
            input_ids=batch.input_ids[keep], attention_mask=batch.attention_mask[keep], labels=batch.labels[keep],
            prompt_lengths=batch.prompt_lengths[row : row + 1], bidirectional_prompt=batch.bidirectional_prompt,
        ))
    return rows


def _count(value: Tensor | int) -> float:
    return float(torch.as_tensor(value).detach())


def unit_divisors(batch: ModelBatch, mode: str) -> dict[str, float]:
    """What each of a unit's sums is divided by before the step's mean: nothing (``token``), or the unit's own
    target count of that term (``sequence``). Names not listed divide by 1."""
    if mode == TOKEN:
        return {}
    return {name: max(_count(value), 1.0) for name, value in batch.counts.items()}


def step_denominators(units: list[ModelBatch], mode: str, all_reduce_sum: Callable[[Tensor], Tensor],
                      device: torch.device) -> dict[str, float]:
    """Each term's denominator over the whole step, all ranks: its targets (``token``) or the units that have at
    least one of its targets (``sequence``)."""
    names = sorted({name for unit in units for name in unit.counts})
    totals = torch.zeros(len(names), dtype=torch.float64, device=device)
    for unit in units:
        for index, name in enumerate(names):
            if name in unit.counts:
                count = torch.as_tensor(unit.counts[name], device=device, dtype=torch.float64)
                totals[index] += count if mode == TOKEN else (count > 0).to(torch.float64)
    totals = all_reduce_sum(totals)
    return dict(zip(names, totals.tolist()))

