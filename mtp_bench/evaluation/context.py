"""What a scorer is given: :class:`ScoringContext`, the harness's :class:`~mtp_bench.api.scorer.EvalContext` (the
exported model, its tokenizer, the trial's task and method, decoding settings), whose greedy generations are cached
so that several scorers of one split decode once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mtp_bench.api.task import Example
from mtp_bench.data.pipeline import encode_prompt
from mtp_bench.evaluation.generate import greedy_generate


@dataclass
class ScoringContext:
    """The :class:`~mtp_bench.api.scorer.EvalContext` the harness hands its scorers."""

    model: nn.Module  # the exported plain causal LM, in eval mode
    tokenizer: Any
    task: Any = None  # the trial's task object (the examples' source)
    method: Any = None  # the trial's method object, for scorers of auxiliary predictors
    extra: nn.Module | None = None  # the method's extra modules (heads, register embedding)
    train_model: nn.Module | None = None  # the model as trained (before export), for methods' own forwards
    batch_size: int = 16
    max_new_tokens: int = 512
    bidirectional_prompt: bool = False
    autocast_dtype: torch.dtype | None = None
    run_label: str = ""  # who is evaluated (method label, grid values, seed): captions of artifacts such as grids
    _generations: dict[tuple[str, int], str] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, examples: list[Example], max_new_tokens: int | None = None) -> list[str]:
        """Greedy completions of the examples' prompts (decoded, special tokens dropped), cached per context."""
        budget = max_new_tokens or self.max_new_tokens
        missing = [e for e in examples if (e.prompt, budget) not in self._generations]
        unique = list({e.prompt: e for e in missing}.values())
        if unique:
            prompts = [encode_prompt(self.tokenizer, e.prompt) for e in unique]
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                outputs = greedy_generate(
                    self.model,
                    prompts,
                    eos_id=self.tokenizer.eos_token_id,
                    pad_id=self.tokenizer.pad_token_id,
                    max_new_tokens=budget,
                    batch_size=self.batch_size,
                    bidirectional_prompt=self.bidirectional_prompt,
                )
            for example, tokens in zip(unique, outputs):
                self._generations[(example.prompt, budget)] = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return [self._generations[(e.prompt, budget)] for e in examples]
