"""Speculative decoding at realistic depth: the speedup implied for a ~110M-parameter, 12-layer model.

τ comes from the briefly trained tiny models (:mod:`mtp_bench.bench.speculative_cost`), where one extra block doubles
a verifier step's cost; what a drafter costs depends on the model's depth and width. So the cost side is measured on
the realistic width (the Llama of :mod:`mtp_bench.bench.method_width`, random weights, each method's own drafter with
k drafts): the time of a plain greedy token (one KV-cached forward of one token) and of one self-speculative
verifier step (the pending token plus k drafts, and the drafter's own work). Acceptance does not change either cost,
so random weights suffice; the implied speedup is τ × (greedy token time) / (speculative step time).
"""

from __future__ import annotations

from typing import Any

import torch

from mtp_bench.bench.method_width import QUICK_WIDE_MODEL, WIDE_MODEL
from mtp_bench.bench.timing import interleave, spread

PROMPT_LENGTH, NEW_TOKENS, PROMPTS = 96, 32, 3  # a GSM8K-length prompt; steps enough to amortise the prefill
VOCAB, QUICK_VOCAB = 32000, 256


def wide_model(quick: bool, device: torch.device) -> Any:
    """The realistic-width Llama (a small stand-in under ``--quick``), random weights, sdpa, fp32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    section = QUICK_WIDE_MODEL if quick else WIDE_MODEL
    config = LlamaConfig(**section["config_overrides"], vocab_size=QUICK_VOCAB if quick else VOCAB,
                         max_position_embeddings=2048, tie_word_embeddings=True, bos_token_id=0, eos_token_id=1,
                         pad_token_id=2)
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(config).to(device).eval()


def step_costs(methods: list[tuple[Any, dict[str, Any]]], k: int, quick: bool, device: torch.device) -> dict[str, Any]:
    """Seconds per plain greedy token and per speculative verifier step (median over prompts) for each
    (method class, params); keys: ``model`` (words), ``greedy`` and every method's name."""
    from mtp_bench.api.method import MethodContext
    from mtp_bench.evaluation.generate import greedy_generate
    from mtp_bench.evaluation.speculative_decoding import DraftStats, speculative_generate

    model = wide_model(quick, device)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, vocab, (PROMPT_LENGTH,), generator=generator).tolist() for _ in range(PROMPTS)]
    never = -1  # no end of sequence: every decode runs its whole budget
    drafters, steps = {}, {}
    for cls, params in methods:
        method = cls(cls.Params.model_validate(params), MethodContext(train_mode="full"))
        extra = method.prepare(model, None)
        drafters[method.name] = method.make_drafter(method.export(model, extra), extra.eval() if extra else None, k)

    def greedy(index: int) -> int:
        greedy_generate(model, [prompts[index % PROMPTS]], eos_id=never, pad_id=2, max_new_tokens=NEW_TOKENS,
                        batch_size=1)
        return NEW_TOKENS

    def speculative(name: str):
        def call(index: int) -> int:
            stats = DraftStats()
            speculative_generate(drafters[name], prompts[index % PROMPTS], device=device, eos_id=never,
                                 max_new_tokens=NEW_TOKENS, stats=stats)
            return stats.steps + 1  # the prefill's forward yields the first token
        return call

    with torch.inference_mode():
        timed = interleave({"greedy": greedy, **{name: speculative(name) for name in drafters}}, rounds=PROMPTS,
                           warmup=1, device=device)
    for name in timed.seconds:
        steps[name] = spread([s / n for s, n in zip(timed.seconds[name], timed.results[name])]).median
    size = sum(p.numel() for p in model.parameters())
    config = model.config
    steps["depth"] = f"{config.num_hidden_layers} layers and width {config.hidden_size}"
    steps["model"] = (f"Llama, {size / 1e6:.1f}M parameters (width {config.hidden_size}, {config.num_hidden_layers} "
                      f"layers, vocabulary {vocab:,}), random weights, sdpa, fp32, {device}")
    return steps


def implied_rows(results: dict[str, dict[str, Any]], costs: dict[str, Any]) -> list[list[str]]:
    """Rows: method, τ (tiny, measured), greedy token and speculative step time at depth, their ratio, the implied
    speedup, and the speedup measured on the tiny model."""
    greedy = costs["greedy"]
    rows = []
    for name, result in results.items():
        step = costs[name]
        tau = result["stats"]["tau"]
        rows.append([f"`{name}`", f"{tau:.2f}", f"{1000 * greedy:.1f}", f"{1000 * step:.1f}", f"{step / greedy:.2f}×",
                     f"**{tau * greedy / step:.2f}**", f"{result['speedup_total']:.2f}"])
    return rows
