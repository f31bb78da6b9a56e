"""KV-cached forwards of one sequence, for self-speculative drafters: the cache argument's name, new and cropped
caches, the inputs of new tokens after cached ones, and a verifier forward that records the last layer's call."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from mtp_bench.api.anatomy import Anatomy, LayerCapture, capture_last_layer, unwrap
from mtp_bench.api.masks import narrow_to_window, sliding_window, windowed_masks


def cache_keyword(model: nn.Module) -> str:
    """Name of the KV-cache argument of the model's forward (``cache`` from transformers 5.2x)."""
    parameters = inspect.signature(unwrap(model).forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def new_cache() -> Any:
    from transformers import DynamicCache

    cache = DynamicCache()
    cache.activate_past_recording()  # sliding-window layers can then be cropped back after rejected drafts
    return cache


def crop_cache(cache: Any, length: int) -> None:
    """Drop every cached position from ``length`` on (rejected drafts, registers)."""
    for layer in cache.layers:
        surplus = layer.get_seq_length() - length if getattr(layer, "is_initialized", False) else 0
        if surplus > 0:
            layer.crop(-surplus)


def custom_attention(model: nn.Module, allowed: Tensor, query_positions: Tensor, key_positions: Tensor) -> Any:
    """The ``attention_mask`` argument for an arbitrary pattern ``allowed`` [B, Tq, Tk] that keeps the model's sliding
    windows measured by position id (``query_positions`` [B, Tq], ``key_positions`` [B, Tk]), not by index."""
    model = unwrap(model)
    window = sliding_window(model)
    narrowed = None if window is None else narrow_to_window(allowed, window, query_positions, key_positions)
    return windowed_masks(allowed, model, narrowed)


def decode_inputs(model: nn.Module, input_ids: Tensor, past_length: int, bidirectional: bool = False) -> dict:
    """Forward arguments for new tokens ``input_ids`` [n] of one sequence after ``past_length`` cached ones; with
    ``bidirectional`` (a prompt prefill) the new tokens attend to each other both ways."""
    n = input_ids.numel()
    device = input_ids.device
    positions = torch.arange(past_length, past_length + n, device=device)[None]
    if bidirectional:  # sliding-window layers keep their window, as in training and greedy decoding's prefill
        allowed = torch.ones(1, n, past_length + n, dtype=torch.bool, device=device)
        mask = custom_attention(model, allowed, positions, torch.arange(past_length + n, device=device)[None])
    else:
        mask = torch.ones(1, past_length + n, dtype=torch.long, device=device)
    return {"input_ids": input_ids.reshape(1, n), "position_ids": positions, "attention_mask": mask}


def verifier_forward(anat: Anatomy, input_ids: Tensor, cache: Any, past_length: int,
                     bidirectional: bool = False) -> tuple[Tensor, LayerCapture]:
    """The plain LM's forward on new tokens ``input_ids`` [n] with ``cache``: (their logits [n, V], what its last
    decoder layer and final norm saw and produced), for drafters that read the verifier's hidden states."""
    with capture_last_layer(anat) as capture:
        logits = anat.model(**decode_inputs(anat.model, input_ids, past_length, bidirectional),
                            **{cache_keyword(anat.model): cache}, use_cache=True).logits[0]
    return logits, capture
