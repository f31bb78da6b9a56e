"""Self-speculative greedy decoding: a method's extra predictors draft, the plain causal LM verifies in one forward.

Each verifier step feeds the pending token (the verifier's own previous prediction, always right) followed by the
drafts; the longest prefix of drafts that equals the verifier's arg-max is accepted, plus the verifier's token after
it, and the KV cache is cropped back to the accepted length. The output is therefore *identical* to plain greedy
decoding — the drafts only change how many tokens one forward yields. The decoder knows drafters only through
:class:`mtp_bench.api.method.Drafter` (heads, DeepSeek modules, MuToR registers alike). Batch size 1: rows of
a batch would accept different numbers of drafts, and ragged caches are not worth their complexity for a
measurement.

Statistics, over the verifier steps after the prompt prefill:
- ``acceptance/h{k}``: fraction of steps that proposed a draft for x_{t+k} (k >= 2) in which it was accepted (greedy
  acceptance is a prefix, so this includes every earlier draft of the step being accepted);
- ``acceptance_given_previous/h{k}``: the same, among steps whose earlier drafts were all accepted (the head's own
  quality, independent of the heads before it);
- ``tau``: mean tokens per verifier step, counting the verifier's own token (1 = no gain).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from mtp_bench.api.decoding import crop_cache, new_cache
from mtp_bench.api.method import Drafter
from mtp_bench.evaluation.generate import greedy_generate


@dataclass
class DraftStats:
    """Counts of one or more speculative decodes (add them with :meth:`add`)."""

    steps: int = 0  # verifier steps after the prefill
    tokens: int = 0  # tokens those steps yielded (accepted drafts plus the verifier's own)
    proposed: list[int] = field(default_factory=list)  # [j]: steps that proposed a draft at position j (x_{t+j+2})
    reached: list[int] = field(default_factory=list)  # [j]: ... whose drafts before j were all accepted
    accepted: list[int] = field(default_factory=list)  # [j]: ... in which draft j was accepted

    def record(self, n_drafts: int, n_accepted: int, verifier_token: bool = True) -> None:
        """One verifier step; ``verifier_token`` False when an accepted draft ended the sequence, so the verifier's
        own next token is not part of the output."""
        grow = n_drafts - len(self.proposed)
        if grow > 0:
            for counts in (self.proposed, self.reached, self.accepted):
                counts.extend([0] * grow)
        self.steps += 1
        self.tokens += n_accepted + int(verifier_token)
        for j in range(n_drafts):
            self.proposed[j] += 1
            self.reached[j] += j <= n_accepted
            self.accepted[j] += j < n_accepted

    def add(self, other: DraftStats) -> None:
        grow = len(other.proposed) - len(self.proposed)
        for counts in (self.proposed, self.reached, self.accepted):
            counts.extend([0] * max(grow, 0))
        for mine, theirs in ((self.proposed, other.proposed), (self.reached, other.reached),
                             (self.accepted, other.accepted)):
            for j, value in enumerate(theirs):
                mine[j] += value
        self.steps += other.steps
        self.tokens += other.tokens

    @property
    def tau(self) -> float:
        return self.tokens / self.steps if self.steps else 1.0

    def metrics(self) -> dict[str, float]:
        out = {"tau": self.tau, "verifier_steps": float(self.steps)}
        for j, (p, r, a) in enumerate(zip(self.proposed, self.reached, self.accepted)):
            out[f"acceptance/h{j + 2}"] = a / p if p else 0.0
            out[f"acceptance_given_previous/h{j + 2}"] = a / r if r else 0.0
        return out


def _cut(tokens: list[int], eos_id: int, max_new_tokens: int) -> list[int]:
    tokens = tokens[:max_new_tokens]
    if eos_id in tokens:
        tokens = tokens[: tokens.index(eos_id) + 1]
    return tokens


@torch.inference_mode()
def speculative_generate(
    drafter: Drafter,
    prompt: list[int],
    *,
    device: torch.device,
    eos_id: int,
    max_new_tokens: int,
    bidirectional_prompt: bool = False,
    stats: DraftStats | None = None,
) -> list[int]:
    """Greedy continuation of ``prompt`` (cut after EOS, at most ``max_new_tokens``) using ``drafter``'s drafts.

    Returns exactly what :func:`mtp_bench.evaluation.generate.greedy_generate` returns for the same model, up to
    floating-point ties between the verifier's top two logits.
    """
    stats = stats if stats is not None else DraftStats()
    if max_new_tokens <= 0:
        return []
    cache = new_cache()
    ids = torch.tensor(prompt, dtype=torch.long, device=device)
    logits = drafter.forward(ids, cache, 0, prefill=True, bidirectional=bidirectional_prompt)
    past = len(prompt)
    crop_cache(cache, past)
    pending = int(logits[-1].argmax())
    output = [pending]
    drafts = drafter.accept(past, pending)
    while pending != eos_id and len(output) < max_new_tokens:
        # A step yields at most len(drafts) + 1 tokens: draft no further than the budget.
        drafts = list(drafts[: min(drafter.max_drafts, max_new_tokens - len(output) - 1)])
        if eos_id in drafts:  # nothing after an end of sequence is output: neither verify nor count it
            drafts = drafts[: drafts.index(eos_id) + 1]
        inputs = torch.tensor([pending, *drafts], dtype=torch.long, device=device)
        predicted = drafter.forward(inputs, cache, past).argmax(-1).tolist()
        accepted = 0
        while accepted < len(drafts) and drafts[accepted] == predicted[accepted]:
            accepted += 1
        ended = eos_id in drafts[:accepted]
        stats.record(len(drafts), accepted, verifier_token=not ended)
        kept = accepted + 1  # the pending token and the accepted drafts
        past += kept
        crop_cache(cache, past)
        pending = predicted[accepted]
        output.extend([*drafts[:accepted], pending])
        if ended:
            break
        drafts = drafter.accept(kept, pending)
    return _cut(output, eos_id, max_new_tokens)


@dataclass
class SpeculativeReport:
    outputs: list[list[int]]  # speculative continuations, in prompt order
    greedy: list[list[int]]  # plain greedy continuations (batch size 1, same model)
    stats: DraftStats
    speculative_seconds: float
    greedy_seconds: float

    @property
    def mismatches(self) -> int:
        return sum(a != b for a, b in zip(self.outputs, self.greedy))

    def metrics(self) -> dict[str, float]:
        generated = sum(len(o) for o in self.outputs)
        return {
            **self.stats.metrics(),
            "speedup": self.greedy_seconds / max(self.speculative_seconds, 1e-9),
            "mismatches": float(self.mismatches),
            "speculative_seconds": self.speculative_seconds,
            "greedy_seconds": self.greedy_seconds,
            "speculative_tokens_per_s": generated / max(self.speculative_seconds, 1e-9),
            "greedy_tokens_per_s": sum(len(o) for o in self.greedy) / max(self.greedy_seconds, 1e-9),
            "draft_len": float(len(self.stats.proposed)),
        }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare_with_greedy(
    model: nn.Module,
    drafter: Drafter,
    prompts: list[list[int]],
    *,
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    bidirectional_prompt: bool = False,
    warmup: bool = True,
) -> SpeculativeReport:
    """Decode every prompt with plain greedy and with speculative decoding on the same model, one sequence at a time
    each, timing both (after one short warm-up run of each, so that kernel set-up is timed in neither)."""
    device = next(model.parameters()).device
    greedy_kwargs = dict(eos_id=eos_id, pad_id=pad_id, batch_size=1,
                         bidirectional_prompt=bidirectional_prompt)
    if warmup and prompts:
        greedy_generate(model, prompts[:1], max_new_tokens=min(4, max_new_tokens), **greedy_kwargs)
        speculative_generate(drafter, prompts[0], device=device, eos_id=eos_id, max_new_tokens=min(4, max_new_tokens),
                             bidirectional_prompt=bidirectional_prompt)
    _synchronize(device)
    started = time.perf_counter()
    greedy = [greedy_generate(model, [p], max_new_tokens=max_new_tokens, **greedy_kwargs)[0] for p in prompts]
    _synchronize(device)
    greedy_seconds = time.perf_counter() - started
    stats = DraftStats()
    started = time.perf_counter()
    outputs = [
        speculative_generate(drafter, p, device=device, eos_id=eos_id, max_new_tokens=max_new_tokens,
                             bidirectional_prompt=bidirectional_prompt, stats=stats)
        for p in prompts
    ]
    _synchronize(device)
    return SpeculativeReport(outputs, greedy, stats, time.perf_counter() - started, greedy_seconds)
