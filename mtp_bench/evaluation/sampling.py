"""Batched sampling with a KV cache and classifier-free guidance, as LlamaGen samples class-conditional images.

Beside :func:`mtp_bench.evaluation.generate.greedy_generate` (and on the same left-padded, position-counting batches,
so a padded row samples exactly as it would alone). Each step, for every prompt:

1. **Guidance.** With ``unconditional_prompts``, the prompt's conditional row and its unconditional row (e.g. the
   null class) run in the same forward; the logits are ``uncond + cfg_scale * (cond - uncond)`` (LlamaGen's formula,
   computed as ``cond + (cfg_scale - 1) * (cond - uncond)``, equal in exact arithmetic, so that scale 1 gives the
   conditional logits bit for bit). The sampled token is appended to *both* rows.
2. **Allowed tokens.** With ``allowed_token_ids`` every other logit is -inf (image codes only: LlamaGen's vocabulary
   is its codebook, ours also holds class and special tokens).
3. **Temperature** divides the logits (0: greedy, the arg max), then **top-k** (0: off) keeps the k largest (ties at
   the k-th kept, as LlamaGen does), then **top-p** (1: off) keeps the largest tokens down to the first whose
   cumulative probability exceeds p (LlamaGen's rule; always at least one).
4. **Sampling** by inverse CDF with one uniform number per prompt and step.

Reproducibility: before anything runs, one 63-bit seed per prompt is drawn from ``generator`` (in input order), and
each prompt's uniforms come from a CPU generator seeded with it. So a prompt's tokens depend on the generator's state
and its own logits only: not on batch size, sorting by length, padding, other prompts, or the device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from transformers import DynamicCache

from mtp_bench.evaluation.generate import cache_argument, left_pad, prefill_inputs

SEED_BOUND = 2**63 - 1


@torch.inference_mode()
def sample_generate(
    model: nn.Module,
    prompts: list[list[int]],
    *,
    num_new_tokens: int,
    pad_id: int,
    unconditional_prompts: list[list[int]] | None = None,
    cfg_scale: float = 1.0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    allowed_token_ids: list[int] | None = None,
    batch_size: int = 16,
    generator: torch.Generator | None = None,
    bidirectional_prompt: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """Exactly ``num_new_tokens`` sampled tokens per prompt (no stop at EOS), in input order; see the module
    docstring for guidance, filtering and reproducibility. ``batch_size`` counts prompts (a guided prompt is two rows
    of the forward); ``on_batch(n)`` reports progress."""
    _check_arguments(prompts, unconditional_prompts, num_new_tokens, temperature, top_k, top_p, allowed_token_ids)
    seeds = torch.randint(SEED_BOUND, (len(prompts),), generator=generator).tolist()
    device = next(model.parameters()).device
    allowed = None
    if allowed_token_ids is not None:
        allowed = torch.tensor(sorted(set(allowed_token_ids)), dtype=torch.long, device=device)
    settings = _Settings(cfg_scale, temperature, top_k, top_p, allowed)

    def span(i: int) -> int:
        return max(len(prompts[i]), len(unconditional_prompts[i])) if unconditional_prompts else len(prompts[i])

    order = sorted(range(len(prompts)), key=span)
    outputs: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        uniforms = torch.stack([torch.rand(num_new_tokens, generator=torch.Generator().manual_seed(seeds[i]),
                                           dtype=torch.float64) for i in chunk])
        rows = [prompts[i] for i in chunk]
        if unconditional_prompts is not None:
            rows += [unconditional_prompts[i] for i in chunk]
        tokens = _sample_batch(model, rows, len(chunk), uniforms, settings, pad_id, bidirectional_prompt, device)
        for index, row in zip(chunk, tokens):
            outputs[index] = row
        if on_batch is not None:
            on_batch(len(chunk))
    return outputs


class _Settings:
    def __init__(self, cfg_scale: float, temperature: float, top_k: int, top_p: float, allowed: Tensor | None):
        self.cfg_scale, self.temperature, self.top_k, self.top_p, self.allowed = (
            cfg_scale, temperature, top_k, top_p, allowed)


def _check_arguments(prompts: list[list[int]], unconditional: list[list[int]] | None, num_new_tokens: int,
                     temperature: float, top_k: int, top_p: float, allowed: list[int] | None) -> None:
    if unconditional is not None and len(unconditional) != len(prompts):
        raise ValueError(f"unconditional_prompts has {len(unconditional)} prompts for {len(prompts)} prompts: "
                         "give one per prompt")
    if any(not p for p in prompts) or (unconditional is not None and any(not p for p in unconditional)):
        raise ValueError("every prompt needs at least one token (e.g. the class token)")
    if num_new_tokens < 0 or temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need num_new_tokens >= 0, temperature >= 0, top_k >= 0 and 0 < top_p <= 1; got "
                         f"{num_new_tokens}, {temperature}, {top_k}, {top_p}")
    if allowed is not None and not allowed:
        raise ValueError("allowed_token_ids is empty: no token could be sampled")


def guided_logits(logits: Tensor, n_prompts: int, cfg_scale: float) -> Tensor:
    """The [n, V] logits to sample from, given a forward's [n, V] rows (no guidance) or [2n, V] rows (conditional
    rows first, then the unconditional ones in the same order)."""
    if logits.size(0) == n_prompts:
        return logits
    cond, uncond = logits[:n_prompts], logits[n_prompts:]
    return cond + (cfg_scale - 1.0) * (cond - uncond)


def filter_logits(logits: Tensor, temperature: float, top_k: int, top_p: float, allowed: Tensor | None) -> Tensor:
    """Allowed tokens, temperature (skipped at 0: greedy reads the arg max), top-k, top-p; removed tokens at -inf."""
    logits = logits.float()
    if allowed is not None:
        keep = torch.zeros(logits.size(-1), dtype=torch.bool, device=logits.device)
        keep[allowed] = True
        logits = logits.masked_fill(~keep, float("-inf"))
    if temperature > 0:
        logits = logits / temperature
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability of the tokens strictly ahead of each one
        drop_sorted = before > top_p  # LlamaGen's rule; the first token always stays (before = 0)
        logits = logits.masked_fill(drop_sorted.scatter(1, order, drop_sorted), float("-inf"))
    return logits


def draw(logits: Tensor, uniforms: Tensor, temperature: float) -> Tensor:
    """One token per row: the arg max at temperature 0, else the inverse CDF of softmax(logits) at ``uniforms`` [n]."""
    if temperature == 0:
        return logits.argmax(-1)
    cdf = logits.double().softmax(-1).cumsum(-1)
    u = uniforms.to(cdf.device)[:, None] * cdf[:, -1:]
    index = torch.searchsorted(cdf, u, right=True)  # first token whose cumulative probability exceeds u
    return index.clamp(max=logits.size(-1) - 1).squeeze(-1)


def _sample_batch(model: nn.Module, rows: list[list[int]], n_prompts: int, uniforms: Tensor, settings: _Settings,
                  pad_id: int, bidirectional_prompt: bool, device: torch.device) -> list[list[int]]:
    ids, mask = left_pad(rows, pad_id, device)
    cache_kw = {cache_argument(model): DynamicCache()}  # one cache object, filled in place by every forward
    out = model(**prefill_inputs(ids, mask, model, bidirectional_prompt), **cache_kw, use_cache=True)
    positions = mask.sum(-1, keepdim=True)  # next position of each row
    generated = []
    for step in range(uniforms.size(1)):
        logits = guided_logits(out.logits[:, -1].float(), n_prompts, settings.cfg_scale)  # guidance in float32
        logits = filter_logits(logits, settings.temperature, settings.top_k, settings.top_p, settings.allowed)
        token = draw(logits, uniforms[:, step], settings.temperature)
        generated.append(token)
        if step + 1 == uniforms.size(1):
            break  # the last token needs no forward
        both = token.repeat(len(rows) // n_prompts)  # the same token for a prompt's conditional and unconditional row
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        out = model(input_ids=both[:, None], attention_mask=mask, position_ids=positions, **cache_kw, use_cache=True)
        positions = positions + 1
    return torch.stack(generated, dim=1).tolist() if generated else [[] for _ in range(n_prompts)]
