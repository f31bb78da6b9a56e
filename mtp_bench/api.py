"""The method API: what a training objective implements, and the batch and loss types it exchanges with the loop.

A method is one file with one class that satisfies :class:`Method` (a Protocol: nothing to inherit). The shared loop
(``mtp_bench.train.loop``) owns everything else — optimiser, schedule, accumulation, clipping, autocast, token
counting, evaluation timing — so that methods compared in one suite differ only in their objective.

Loss normalisation. A method returns *sums* of per-target losses, and its :meth:`Method.transform` says how many
targets each term has. The loop divides every sum by its term's count over the whole optimiser step (all
micro-batches, all data-parallel ranks) before weighting, so the objective is a true token mean over the effective
batch, whatever the accumulation or the number of workers:

    objective = sum_k weight_k * (sum over the step of sums_k) / (sum over the step of counts_k)

Metric names (``LossOutput.sums`` keys) follow one convention so runs compare side by side in MLflow:
``loss/ntp`` and ``acc/ntp`` for the next-token path; ``loss/h{k}`` and ``acc/h{k}`` for an auxiliary predictor of
the token *k* steps ahead (at position t, having seen x_1..x_t, it predicts x_{t+k}); other names are the method's own.
Only terms with a weight enter the objective; the rest are logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from pathlib import Path

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
    """Summed (not averaged) losses and statistics of one micro-batch, keyed by metric name.

    ``weights`` names the terms of the objective and their weights; every other key of ``sums`` is only logged.
    """

    sums: dict[str, Tensor]
    weights: dict[str, float]


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
        """Run the forward pass and return summed loss terms (see the module docstring)."""
        ...

    def export(self, model: nn.Module, extra: nn.Module | None) -> nn.Module:
        """The plain causal LM used for evaluation: loadable by ``AutoModelForCausalLM.from_pretrained`` and lm-eval
        after ``save_pretrained``. Whatever ``prepare`` added stays out of it (the harness saves ``extra`` beside it).
        """
        ...


@runtime_checkable
class SupportsFuturePredictions(Protocol):
    """Optional: a method whose extra predictors can propose future tokens (speculative drafting, per-horizon
    accuracy). ``future_logits`` returns, for each horizon k >= 2 it serves, logits [B, V] for x_{t+k} where t is the
    last real position of each row of ``input_ids`` (right-padded, ``attention_mask`` 1 on real tokens)."""

    def future_logits(
        self, model: nn.Module, extra: nn.Module | None, input_ids: Tensor, attention_mask: Tensor
    ) -> dict[int, Tensor]: ...


@runtime_checkable
class SavesExtra(Protocol):
    """Optional: a method that writes its extra modules in a form of its own (default: ``extra.safetensors``)."""

    def save_extra(self, extra: nn.Module, directory: Path) -> None: ...


# ----------------------------------------------------------------------------------------------------- helpers ----
# Small, model-agnostic pieces every method needs; kept here so that methods never import each other.


def shifted_targets(labels: Tensor) -> Tensor:
    """Targets for next-token prediction: position t predicts labels[t + 1]; the last position predicts nothing."""
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def future_targets(labels: Tensor, k: int) -> Tensor:
    """Targets k steps ahead: position t predicts labels[t + k] (``IGNORE_INDEX`` past the end)."""
    return F.pad(labels[:, k:], (0, k), value=IGNORE_INDEX)


def count_targets(targets: Tensor) -> Tensor:
    return (targets != IGNORE_INDEX).sum()


def cross_entropy_sum(logits: Tensor, targets: Tensor) -> Tensor:
    """Summed cross-entropy in fp32 over the positions whose target is not ``IGNORE_INDEX``."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def correct_sum(logits: Tensor, targets: Tensor) -> Tensor:
    """Number of positions whose arg-max prediction equals the target (ignored positions excluded)."""
    valid = targets != IGNORE_INDEX
    return ((logits.detach().argmax(-1) == targets) & valid).sum()


def allowed_attention(attention_mask: Tensor, prompt_lengths: Tensor | None = None) -> Tensor:
    """Boolean [B, T, T] mask, True where query i may attend to key j: causal over real tokens (``attention_mask``
    [B, T], 1 on real tokens), plus the whole prompt block when ``prompt_lengths`` is given (bidirectional prompt).
    Padded queries attend to themselves only, so that no row is empty."""
    bsz, length = attention_mask.shape
    device = attention_mask.device
    pos = torch.arange(length, device=device)
    allowed = (pos[None, :] <= pos[:, None]).expand(bsz, length, length)
    if prompt_lengths is not None:
        in_prompt = pos[None, :] < prompt_lengths[:, None]  # [B, T]
        allowed = allowed | (in_prompt[:, :, None] & in_prompt[:, None, :])
    real = attention_mask.bool()
    allowed = allowed & real[:, None, :] & real[:, :, None]
    return allowed | torch.eye(length, dtype=torch.bool, device=device)[None]


def as_input_embedding(vector: Tensor, embedding: nn.Module, dtype: torch.dtype) -> Tensor:
    """A learned vector in the space of the embedding table's rows (MuToR's register), as the model's embedding
    module outputs a row: Gemma-style modules multiply every row by ``embed_scale`` (sqrt(hidden)) in their
    forward, so a vector fed beside them through ``inputs_embeds`` is scaled alike, as a ``<reg>`` vocabulary row
    would be."""
    vector = vector.to(dtype)
    scale = getattr(embedding, "embed_scale", None)
    if scale is None:
        return vector
    return vector * torch.as_tensor(scale, device=vector.device).to(dtype)


def model_attention_mask(allowed: Tensor, model: nn.Module) -> Tensor:
    """Turn a boolean [B, Tq, Tk] mask into the 4D form the model's attention implementation reads.

    sdpa takes a boolean mask; eager attention *adds* the mask to its scores, so it needs 0 / dtype-min floats
    (a boolean mask there is silently added as 0/1 — measured: logits off by ~0.1).
    """
    allowed = allowed[:, None]  # [B, 1, Tq, Tk]
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", "eager") or "eager"
    if implementation == "sdpa":
        return allowed
    dtype = next(model.parameters()).dtype
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


def sliding_window(model: nn.Module) -> int | None:
    """The window of the model's sliding-window attention layers, or None when every layer attends globally."""
    config = getattr(model, "config", None)
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if window is None or (layer_types is not None and "sliding_attention" not in layer_types):
        return None
    return int(window)


def model_attention_masks(allowed: Tensor, model: nn.Module) -> Tensor | dict[str, Tensor]:
    """:func:`model_attention_mask`, keeping sliding-window layers' window. Hugging Face uses a custom 4D mask as-is
    in every layer, so for Gemma 2/3, Mistral or windowed Qwen2 the window (query i sees key j only if
    i - j < window, on the square [B, T, T] mask of real tokens) is applied here; models with both layer kinds get
    one mask per kind, keyed as their forward reads them."""
    full = model_attention_mask(allowed, model)
    window = sliding_window(model)
    if window is None:
        return full
    index = torch.arange(allowed.size(-1), device=allowed.device)
    sliding = model_attention_mask(allowed & ((index[:, None] - index[None, :]) < window), model)
    if getattr(model.config, "layer_types", None) is None:
        return sliding  # every layer slides
    return {"full_attention": full, "sliding_attention": sliding}


def plain_forward_inputs(
    input_ids: Tensor, attention_mask: Tensor, model: nn.Module, prompt_lengths: Tensor | None = None
) -> dict[str, Tensor | dict[str, Tensor]]:
    """Forward arguments for an unmodified right-padded sequence. Causal attention passes the 2D padding mask (so
    every attention kernel can be used); a bidirectional prompt (``prompt_lengths`` given) needs a 4D mask."""
    if prompt_lengths is None:
        return {"input_ids": input_ids, "attention_mask": attention_mask}
    position_ids = torch.arange(input_ids.size(1), device=input_ids.device).expand_as(input_ids)
    return {
        "input_ids": input_ids,
        "attention_mask": model_attention_masks(allowed_attention(attention_mask, prompt_lengths), model),
        "position_ids": position_ids,
    }


# ----------------------------------------------------------------------------------------------- drafting ----
# Self-speculative decoding (``mtp_bench.evaluation.speculative``): a method whose extra predictors can propose
# future tokens implements ``SupportsDrafting``; the decoder verifies the drafts with the plain causal LM and never
# knows the method by name. Batch size 1.


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
