"""Batched greedy decoding with a KV cache, the reference every scorer and the speculative decoder use.

Prompts are left-padded; positions count real tokens only, so a padded row decodes exactly as it would alone. With
``bidirectional_prompt`` the prefill lets prompt tokens attend to each other both ways (the MuToR paper's protocol,
matching how every method was trained); decoding after it is causal. Sampling (temperature, top-k, top-p,
classifier-free guidance) is :mod:`mtp_bench.evaluation.sampling`, on the same padding and positions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import Tensor, nn
from transformers import DynamicCache

from mtp_bench.api.masks import model_attention_masks


def cache_argument(model: nn.Module) -> str:
    """Name of the KV-cache argument of the model's forward: ``cache`` from transformers 5.2x, ``past_key_values``
    before (the old name still works there, with a deprecation warning)."""
    if hasattr(model, "get_base_model"):  # peft wrappers forward **kwargs to the model they wrap
        model = model.get_base_model()
    forward = getattr(model, "forward", None)
    try:
        parameters = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


def left_pad(prompts: list[list[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor]:
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, length - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, length - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def prefill_inputs(ids: Tensor, mask: Tensor, model: nn.Module, bidirectional_prompt: bool) -> dict[str, Tensor]:
    """Forward arguments for a left-padded prompt batch (positions from 0 at each row's first real token)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    if not bidirectional_prompt:
        return {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
    real = mask.bool()
    eye = torch.eye(ids.size(1), dtype=torch.bool, device=ids.device)[None]
    allowed = (real[:, :, None] & real[:, None, :]) | eye  # the whole prompt block, both ways
    return {"input_ids": ids, "attention_mask": model_attention_masks(allowed, model), "position_ids": positions}


@torch.inference_mode()
def greedy_generate(
    model: nn.Module,
    prompts: list[list[int]],
    *,
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    batch_size: int = 16,
    bidirectional_prompt: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """Greedy continuations (without the prompt, cut after EOS) for token-id prompts, in input order.

    Prompts are sorted by length so that batches waste little padding; ``on_batch(n)`` reports progress.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for index, tokens in zip(chunk, _generate_batch(model, [prompts[i] for i in chunk], eos_id, pad_id,
                                                         max_new_tokens, bidirectional_prompt, device)):
            outputs[index] = tokens
        if on_batch is not None:
            on_batch(len(chunk))
    return outputs


def _generate_batch(
    model: nn.Module,
    prompts: list[list[int]],
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    bidirectional_prompt: bool,
    device: torch.device,
) -> list[list[int]]:
    ids, mask = left_pad(prompts, pad_id, device)
    cache_kw = {cache_argument(model): DynamicCache()}  # one cache object, filled in place by every forward
    out = model(**prefill_inputs(ids, mask, model, bidirectional_prompt), **cache_kw, use_cache=True)
    positions = mask.sum(-1, keepdim=True)  # next position of each row
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    generated = []
    for _ in range(max_new_tokens):
        next_token = out.logits[:, -1].argmax(-1)
        next_token = torch.where(finished, torch.full_like(next_token, pad_id), next_token)
        generated.append(next_token)
        finished |= next_token == eos_id
        if bool(finished.all()):
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        out = model(
            input_ids=next_token[:, None],
            attention_mask=mask,
            position_ids=positions,
            **cache_kw,
            use_cache=True,
        )
        positions = positions + 1
    tokens = torch.stack(generated, dim=1).tolist() if generated else [[] for _ in prompts]
    result = []
    for row in tokens:
        cut = row.index(eos_id) + 1 if eos_id in row else len(row)
        result.append(row[:cut])
    return result
