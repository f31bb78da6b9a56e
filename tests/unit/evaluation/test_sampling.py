"""Classifier-free guided sampling (mtp_bench.evaluation.sampling): scale 1 is unguided sampling, top-k 1 and
temperature 0 are greedy decoding, the allowed-token set holds, padding and batching change nothing, the KV-cached
sampler equals a plain full-forward reference that applies LlamaGen's guidance formula, and a fixed generator
reproduces every token."""

from __future__ import annotations

import pytest
import torch

from helpers import make_model
from mtp_bench.evaluation.generate import greedy_generate
from mtp_bench.evaluation.sampling import SEED_BOUND, filter_logits, sample_generate

PAD = 2
NULL_CLASS = 3  # the unconditional "class" of these tests
# Prompts of different lengths (BOS + class, or a longer text-like prompt), so batches are left-padded.
PROMPTS = [[0, 7], [0, 9, 12, 15], [8], [0, 11, 4]]
UNCONDITIONAL = [[0, NULL_CLASS], [0, NULL_CLASS], [NULL_CLASS], [0, 5, NULL_CLASS, 6, 6]]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def model():
    return make_model("llama", "sdpa", seed=3)


def sample(model, **kwargs) -> list[list[int]]:
    kwargs.setdefault("num_new_tokens", 6)
    return sample_generate(model, kwargs.pop("prompts", PROMPTS), pad_id=PAD, **kwargs)


def test_scale_one_equals_unguided_sampling(model):
    unguided = sample(model, generator=gen(1))
    guided = sample(model, unconditional_prompts=UNCONDITIONAL, cfg_scale=1.0, generator=gen(1))
    assert guided == unguided
    assert all(len(row) == 6 for row in guided)
    assert sample(model, unconditional_prompts=UNCONDITIONAL, cfg_scale=3.0, generator=gen(1)) != unguided


def test_top_k_one_and_temperature_zero_are_greedy(model):
    greedy = greedy_generate(model, PROMPTS, eos_id=-1, pad_id=PAD, max_new_tokens=6)  # -1: never stops early
    assert sample(model, top_k=1, generator=gen(2)) == greedy
    assert sample(model, temperature=0.0, generator=gen(5)) == greedy
    assert sample(model, top_p=1e-6, generator=gen(6)) == greedy  # top-p keeps only the most likely token


def test_allowed_token_ids_are_the_only_ones_sampled(model):
    allowed = list(range(20, 36))
    rows = sample(model, num_new_tokens=12, allowed_token_ids=allowed, unconditional_prompts=UNCONDITIONAL,
                  cfg_scale=2.0, temperature=1.5, generator=gen(3))
    assert all(token in allowed for row in rows for token in row)
    # Greedy within the set is the arg max over the set: the same as greedy on logits with the rest removed.
    first = sample(model, num_new_tokens=1, allowed_token_ids=allowed, temperature=0.0)
    with torch.no_grad():
        for prompt, row in zip(PROMPTS, first):
            logits = model(input_ids=torch.tensor([prompt])).logits[0, -1]
            assert row[0] == allowed[int(logits[allowed].argmax())]


def test_a_padded_row_samples_exactly_as_it_would_alone(model):
    kwargs = dict(unconditional_prompts=UNCONDITIONAL, cfg_scale=2.5, top_k=20, top_p=0.9, num_new_tokens=8)
    together = sample(model, batch_size=4, generator=gen(4), **kwargs)
    alone = sample(model, batch_size=1, generator=gen(4), **kwargs)  # no padding, no neighbours
    assert together == alone


def reference_sample(model, prompt, unconditional, scale, steps, seed, top_k=0, top_p=1.0) -> list[int]:
    """One prompt, no cache, no padding: full forwards of the conditional and unconditional sequences each step,
    LlamaGen's guidance ``uncond + scale * (cond - uncond)``, softmax, and the inverse CDF at the prompt's uniforms."""
    uniforms = torch.rand(steps, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    cond, uncond, out = list(prompt), list(unconditional), []
    with torch.no_grad():
        for step in range(steps):
            c = model(input_ids=torch.tensor([cond])).logits[0, -1]
            u = model(input_ids=torch.tensor([uncond])).logits[0, -1]
            logits = filter_logits((u + scale * (c - u))[None], 1.0, top_k, top_p, None)[0]
            probs = logits.double().softmax(-1)
            token = int((probs.cumsum(-1) <= uniforms[step] * probs.sum()).sum())
            out.append(token)
            cond.append(token)
            uncond.append(token)  # the same token continues both rows
    return out


@pytest.mark.parametrize("scale", [2.0, 4.0])
def test_cached_guided_sampler_equals_a_hand_written_reference(model, scale):
    rows = sample(model, unconditional_prompts=UNCONDITIONAL, cfg_scale=scale, num_new_tokens=5, generator=gen(7),
                  top_k=30)
    seeds = torch.randint(SEED_BOUND, (len(PROMPTS),), generator=gen(7)).tolist()
    for prompt, unconditional, seed, row in zip(PROMPTS, UNCONDITIONAL, seeds, rows):
        assert row == reference_sample(model, prompt, unconditional, scale, 5, seed, top_k=30)


def test_guidance_formula_on_the_first_step_by_hand(model):
    # Step one of prompt 0 at scale 3, greedy: the arg max of uncond + 3 (cond - uncond), from two plain forwards.
    with torch.no_grad():
        c = model(input_ids=torch.tensor([PROMPTS[0]])).logits[0, -1]
        u = model(input_ids=torch.tensor([UNCONDITIONAL[0]])).logits[0, -1]
    expected = u + 3.0 * (c - u)
    assert int(expected.argmax()) != int(c.argmax())  # guidance matters for this prompt, or the test shows nothing
    token = sample(model, prompts=PROMPTS[:1], unconditional_prompts=UNCONDITIONAL[:1], cfg_scale=3.0,
                   temperature=0.0, num_new_tokens=1)
    assert token == [[int(expected.argmax())]]


def test_filters_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0, 3.0, 1.0]])
    inf = float("-inf")
    assert filter_logits(logits, 1.0, 2, 1.0, None).tolist() == [[2.0, inf, inf, 3.0, inf]]
    assert filter_logits(logits, 1.0, 3, 1.0, None).tolist() == [[2.0, 1.0, inf, 3.0, 1.0]]  # ties at the k-th stay
    assert filter_logits(logits, 2.0, 0, 1.0, torch.tensor([0, 2])).tolist() == [[1.0, inf, 0.0, inf, inf]]
    # softmax: 0.6103 (3), 0.2245 (2), 0.0826 (1), 0.0826 (1), 0.0304 (0). p = 0.7: the top token alone is under p,
    # so the next one is kept too (LlamaGen's rule), and no more.
    assert filter_logits(logits, 1.0, 0, 0.7, None).tolist() == [[2.0, inf, inf, 3.0, inf]]
    assert filter_logits(logits, 1.0, 0, 0.5, None).tolist() == [[inf, inf, inf, 3.0, inf]]


def test_a_fixed_generator_reproduces_every_token(model):
    kwargs = dict(unconditional_prompts=UNCONDITIONAL, cfg_scale=2.0, top_p=0.95, num_new_tokens=10)
    first = sample(model, generator=gen(11), **kwargs)
    assert sample(model, generator=gen(11), **kwargs) == first
    assert sample(model, generator=gen(12), **kwargs) != first
    torch.manual_seed(0)
    state = torch.get_rng_state()
    sample(model, generator=gen(11), **kwargs)
    assert torch.equal(torch.get_rng_state(), state)  # nothing is drawn from the global generator


def test_bad_arguments_are_named():
    model = make_model("llama", "sdpa")
    with pytest.raises(ValueError, match="unconditional_prompts has 1 prompts for 4"):
        sample(model, unconditional_prompts=UNCONDITIONAL[:1])
    with pytest.raises(ValueError, match="top_p"):
        sample(model, top_p=0.0)
    with pytest.raises(ValueError, match="allowed_token_ids is empty"):
        sample(model, allowed_token_ids=[])


def test_runs_under_bf16_autocast_within_the_allowed_set(model):
    # The image scorer samples under the trial's autocast; guidance and sampling still run in float32 / float64.
    allowed = list(range(20, 36))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rows = sample(model, unconditional_prompts=UNCONDITIONAL, cfg_scale=2.0, allowed_token_ids=allowed,
                      generator=gen(13))
        again = sample(model, unconditional_prompts=UNCONDITIONAL, cfg_scale=2.0, allowed_token_ids=allowed,
                       generator=gen(13))
    assert rows == again and all(len(r) == 6 and set(r) <= set(allowed) for r in rows)
