"""How big each benchmark part runs: ``FULL`` (about 10 minutes on 2 loaded cores) and ``QUICK`` (the smoke test),
and the model a run chooses instead of the default."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Sizes:
    """How big each part runs. ``FULL`` fits the whole run in about 10 minutes on 2 loaded cores; ``QUICK`` is the
    smoke test (seconds a part)."""

    quick: bool
    model: dict[str, Any]  # suite ``model`` section of the GSM8K parts (overhead, methods, eval)
    train_limit: int | None  # GSM8K training examples kept (tokenizer text and batch pool); None: all of them
    batch_size: int
    n_batches: int  # distinct GSM8K batches, cycled over the rounds
    max_length: int  # longer GSM8K examples are dropped, as in the paper
    overhead_rounds: int
    overhead_warmup: int
    method_rounds: int
    method_warmup: int
    memory_steps: int  # training steps in each fresh memory-probe process
    eval_prompts: int
    eval_new_tokens: int
    eval_batch: int
    eval_rounds: int
    spec_model: dict[str, Any]
    spec_steps: int
    spec_batch: int
    spec_prompts: int
    spec_new_tokens: int
    spec_k: int  # drafts per verifier step
    makespan_trials: int
    makespan_steps: int


FULL = Sizes(
    quick=False, model={"preset": "tiny-llama", "tokenizer_vocab_size": 512}, train_limit=None, batch_size=8,
    n_batches=4, max_length=512, overhead_rounds=20, overhead_warmup=2, method_rounds=6, method_warmup=1,
    memory_steps=3, eval_prompts=64, eval_new_tokens=128, eval_batch=16, eval_rounds=3,
    spec_model={"preset": "tiny-llama", "tokenizer_vocab_size": 512}, spec_steps=150, spec_batch=8,
    spec_prompts=12, spec_new_tokens=128, spec_k=3, makespan_trials=4, makespan_steps=100,
)
QUICK = Sizes(
    quick=True, model={"preset": "micro-llama", "tokenizer_vocab_size": 256}, train_limit=200, batch_size=2,
    n_batches=2, max_length=256, overhead_rounds=3, overhead_warmup=1, method_rounds=2, method_warmup=1,
    memory_steps=1, eval_prompts=4, eval_new_tokens=8, eval_batch=2, eval_rounds=1,
    spec_model={"preset": "micro-llama", "tokenizer_vocab_size": 256}, spec_steps=4, spec_batch=4,
    spec_prompts=2, spec_new_tokens=12, spec_k=3, makespan_trials=2, makespan_steps=5,
)


def sizes_for(quick: bool, model: str | None) -> Sizes:
    """The sizes of a run; ``model`` (a preset name, hub id or local directory) replaces the default model."""
    sizes = QUICK if quick else FULL
    if model is None:
        return sizes
    from mtp_bench.suite.presets import PACKAGED, PRESETS

    section = {"preset": model, "tokenizer_vocab_size": sizes.model.get("tokenizer_vocab_size", 512)} \
        if model in PRESETS else {"preset": model} if model in PACKAGED else {"pretrained": model}
    return replace(sizes, model=section, spec_model=section)
