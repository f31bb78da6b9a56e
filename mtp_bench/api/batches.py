"""The batch and loss types a method exchanges with the shared loop (see :mod:`mtp_bench.api.method`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

IGNORE_INDEX = -100


@dataclass
class TokenBatch:
    """A tokenized, right-padded batch as the data pipeline hands it to a method.

    ``labels`` is aligned with ``input_ids`` (not shifted): ``labels[b, t] == input_ids[b, t]`` where token t is a
    training target (answer tokens in fine-tuning, every real token in pretraining) and ``IGNORE_INDEX`` elsewhere.
    """

    input_ids: Tensor  # [B, T] long
    attention_mask: Tensor  # [B, T] long, 1 on real tokens, 0 on right padding
    labels: Tensor  # [B, T] long
    prompt_lengths: Tensor  # [B] long, prompt tokens at the start of each row (0 for plain text)
    bidirectional_prompt: bool = False  # prompt tokens attend to each other in both directions (all methods alike)

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(
            input_ids=self.input_ids.to(device, non_blocking=True),
            attention_mask=self.attention_mask.to(device, non_blocking=True),
            labels=self.labels.to(device, non_blocking=True),
            prompt_lengths=self.prompt_lengths.to(device, non_blocking=True),
            bidirectional_prompt=self.bidirectional_prompt,
        )

    @property
    def n_real_tokens(self) -> int:
        return int(self.attention_mask.sum())


@dataclass
class ModelBatch:
    """What a method's ``transform`` produces and its ``loss`` consumes.

    ``tensors`` are the method's own (model inputs, targets, masks); ``counts`` give the number of targets of every
    term that ``loss`` will return, so the loop can normalise over the whole optimiser step; ``n_tokens`` is the
    number of token positions the model processes (real tokens plus any the method inserts), for throughput and cost.
    """

    tensors: dict[str, Tensor]
    counts: dict[str, Tensor | int]
    n_tokens: int


@dataclass
class LossOutput:
    """Summed (not averaged) losses and statistics of one micro-batch, keyed by metric name. Which of them make the
    objective, and with what weights, the method declares apart (:meth:`~mtp_bench.api.method.Method.loss_weights`).
    """

    sums: dict[str, Tensor]
