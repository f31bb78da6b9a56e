"""Compute-matched budgets: how many optimiser steps a trial trains when it stops at a number of processed token
positions or training FLOPs instead of a number of steps (the MuToR paper's compute-matched comparison, Table 3).

The steps are found before training, so that the learning-rate schedule spans exactly the run: the method's batch
transform (no forward pass) runs over the steps in order, with the randomness training will use, and the positions
of each step (real tokens plus any the method inserts, all workers; the loop's ``train/tokens_processed``) are added
up until they reach the budget. FLOPs are the loop's estimate, 6 x parameters x positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from mtp_bench.suite.config import TrainConfig

CHUNK = 256  # steps counted per collective: every rank decides on the same all-reduced numbers


def budget_positions(cfg: TrainConfig, n_forward_params: int) -> int | None:
    """The budget in positions, or None when the trial has none."""
    if cfg.max_positions is not None:
        return cfg.max_positions
    if cfg.max_flops is not None:
        return math.ceil(cfg.max_flops / (6.0 * n_forward_params))
    return None


def steps_for_budget(positions_of_step: Callable[[int], int], budget: int, cap: int,
                     all_reduce_sum: Callable[[Tensor], Tensor], device: torch.device) -> int:
    """The fewest steps whose positions (``positions_of_step``: this rank's, summed over ranks) reach ``budget``;
    ``cap`` (the trial's ``max_steps`` or ``epochs``) when they never do."""
    done, start = 0.0, 0
    while start < cap:
        steps = range(start, min(start + CHUNK, cap))
        local = torch.tensor([float(positions_of_step(step)) for step in steps], dtype=torch.float64, device=device)
        for step, positions in zip(steps, all_reduce_sum(local).tolist()):
            done += positions
            if done >= budget:
                return step + 1
        start = steps.stop
    return cap
