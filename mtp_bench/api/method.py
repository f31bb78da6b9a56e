"""The method contract: the :class:`Method` Protocol, and the optional Protocols for saving its extra modules and
for drafting in self-speculative decoding; :func:`required_extra`, how a loss refuses to run without those modules.

A method is one file with one class that satisfies :class:`Method` (a Protocol: nothing to inherit). The shared loop
(``mtp_bench.train.loop``) owns everything else — optimiser, schedule, accumulation, clipping, autocast, token
counting, evaluation timing — so that methods compared in one suite differ only in their objective.

Loss normalisation. A method returns *sums* of per-target losses, and its :meth:`Method.transform` says how many
targets each term has. The loop divides every sum by its term's count over the whole optimiser step (all
micro-batches, all data-parallel ranks) before weighting, so the objective is a true token mean over the effective
batch, whatever the accumulation or the number of workers:

    objective = sum_k weight_k * (sum over the step of sums_k) / (sum over the step of counts_k)

The weights are the method's own declaration (:meth:`Method.loss_weights`), read by the loop once per step: they are
numbers of the method's settings, not of a batch, so they need not travel through a data-parallel wrapper's forward
(which passes tensors only).

That is ``train.loss_normalisation: token`` (the default). Under ``sequence`` (the official MuToR code's weighting)
the loop feeds the method one sequence at a time and divides each sum by that sequence's own count first, so every
sequence weighs the same; the method's side of the contract does not change.

Metric names (``LossOutput.sums`` keys) follow one convention so runs compare side by side in MLflow:
``loss/ntp`` and ``acc/ntp`` for the next-token path; ``loss/h{k}`` and ``acc/h{k}`` for an auxiliary predictor of
the token *k* steps ahead (at position t, having seen x_1..x_t, it predicts x_{t+k}); other names are the method's own.
Only terms with a (non-zero) weight enter the objective; the rest are logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from mtp_bench.api.batches import LossOutput, ModelBatch, TokenBatch

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class MethodContext:
    """What the harness tells a method when it is created."""

    train_mode: str  # "full", "lora" or "pretrain"
    bidirectional_prompt: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Method(Protocol):
    """A training objective. Implement it in one file under ``methods/`` and register it in the
    ``mtp_bench.methods`` entry-point group. ``Params`` is a pydantic model (``extra="forbid"``) of its settings."""

    name: ClassVar[str]
    Params: ClassVar[type]

    def prepare(self, model: nn.Module, tokenizer: Any) -> nn.Module | None:
        """Add what the method needs (heads, register embeddings) and return those extra trainable modules, or None.

        Called once, before the optimiser exists; the loop trains the returned modules alongside the model and saves
        them with every checkpoint.
        """
        ...

    def transform(self, batch: TokenBatch, generator: torch.Generator) -> ModelBatch:
        """Turn a tokenized batch (already on the training device) into model inputs, targets and target counts.

        Randomness (offsets, register positions) must come from ``generator`` so that runs repeat.
        """
        ...

    def loss(self, model: nn.Module, extra: nn.Module | None, batch: ModelBatch) -> LossOutput:
        """Run the forward pass and return summed loss terms and statistics (see the module docstring)."""
        ...

    def loss_weights(self) -> dict[str, float]:
        """The terms of the objective and their weights, e.g. ``{"loss/ntp": 0.7, "loss/reg": 0.3}``: every other
        term :meth:`loss` returns is only logged. The loop reads it once per optimiser step (and held-out evaluation
        once per evaluation), so it may follow a schedule of the method's own."""
        ...

    def export(self, model: nn.Module, extra: nn.Module | None) -> nn.Module:
        """The plain causal LM used for evaluation: loadable by ``AutoModelForCausalLM.from_pretrained`` and lm-eval
        after ``save_pretrained``. Whatever ``prepare`` added stays out of it (the harness saves ``extra`` beside it).
        """
        ...


def required_extra(extra: nn.Module | None, method: str, what: str) -> nn.Module:
    """``extra`` for a :meth:`Method.loss` that cannot run without the modules its ``prepare`` returned (``what``
    names them in the error): None means the caller skipped ``prepare``."""
    if extra is None:
        raise ValueError(f"{method}.loss needs the {what} that {method}.prepare returned")
    return extra


@runtime_checkable
class SavesExtra(Protocol):
    """Optional: a method that writes its extra modules in a form of its own (default: ``extra.safetensors``)."""

    def save_extra(self, extra: nn.Module, directory: Path) -> None: ...


# Self-speculative decoding (``mtp_bench.evaluation.speculative_decoding``): a method whose extra predictors can
# propose future tokens implements ``SupportsDrafting``; the decoder verifies the drafts with the plain causal LM and
# never knows the method by name. Batch size 1.


@runtime_checkable
class Drafter(Protocol):
    """Drafts tokens from the verifier's own forward passes, for greedy decoding of one sequence.

    Each verifier step: the decoder calls :meth:`forward` on the new tokens, accepts the longest prefix of drafts the
    verifier's arg-max agrees with, crops the KV cache to ``past_length + kept`` and calls :meth:`accept`.
    """

    max_drafts: int  # drafts proposed per step: x_{t+2} .. x_{t+max_drafts+1}

    def forward(self, input_ids: Tensor, cache: Any, past_length: int, prefill: bool = False,
                bidirectional: bool = False) -> Tensor:
        """Run the plain causal LM on ``input_ids`` [n] (positions ``past_length``..) with ``cache``, extending it
        (anything the drafter appends must come after the n real tokens), and return their logits [n, V]. Work for
        drafting may ride along. ``prefill``: the tokens are the prompt; ``bidirectional``: it attends both ways."""
        ...

    def accept(self, kept: int, next_token: int) -> list[int]:
        """After :meth:`forward`: its first ``kept`` tokens stay, the verifier's next token after them is
        ``next_token``; return drafts for the tokens that follow ``next_token`` (at most ``max_drafts``)."""
        ...


@runtime_checkable
class SupportsDrafting(Protocol):
    """Optional: a method whose extra modules can draft for self-speculative decoding."""

    def make_drafter(self, model: nn.Module, extra: nn.Module | None, k: int) -> Drafter | None:
        """A drafter of up to ``k`` tokens per step for ``model`` (the exported plain LM), or None if it has none."""
        ...
