"""Attention patterns as boolean [B, Tq, Tk] masks (causal over real tokens, a bidirectional prompt block, sliding
windows) and their conversion to the form a model's attention kernel reads."""

from __future__ import annotations

import torch
from torch import Tensor, nn


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


def narrow_to_window(allowed: Tensor, window: int, query_positions: Tensor | None = None,
                     key_positions: Tensor | None = None) -> Tensor:
    """``allowed`` [B, Tq, Tk] where query i may see key j only if position(i) - position(j) < ``window``, as Hugging
    Face's sliding-window layers do. Positions ([B or 1, Tq] and [B or 1, Tk]) default to the indices."""
    if query_positions is None:
        query_positions = torch.arange(allowed.size(-2), device=allowed.device)[None]
    if key_positions is None:
        key_positions = torch.arange(allowed.size(-1), device=allowed.device)[None]
    return allowed & (query_positions[:, :, None] - key_positions[:, None, :] < window)


def windowed_masks(allowed: Tensor, model: nn.Module, narrowed: Tensor | None = None) -> Tensor | dict[str, Tensor]:
    """The ``attention_mask`` argument for the pattern ``allowed``: Hugging Face uses a custom 4D mask as-is in every
    layer, so for Gemma 2/3, Mistral or windowed Qwen2 the window is applied here — ``narrowed`` (the pattern within
    the window; default: :func:`narrow_to_window` by index). Models with both layer kinds get one mask per kind,
    keyed as their forward reads them; models whose every layer slides get the narrowed mask."""
    window = sliding_window(model)
    if window is None:
        return model_attention_mask(allowed, model)
    sliding = model_attention_mask(narrowed if narrowed is not None else narrow_to_window(allowed, window), model)
    if getattr(model.config, "layer_types", None) is None:
        return sliding  # every layer slides
    return {"full_attention": model_attention_mask(allowed, model), "sliding_attention": sliding}


def model_attention_masks(allowed: Tensor, model: nn.Module) -> Tensor | dict[str, Tensor]:
    """:func:`model_attention_mask`, keeping sliding-window layers' window (query i sees key j only if
    i - j < window, on the square [B, T, T] mask of real tokens)."""
    return windowed_masks(allowed, model)


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
