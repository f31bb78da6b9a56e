"""Model configs of the built-in tiny presets: the data lives in :mod:`mtp_bench.suite.presets`, this turns an entry
into a Hugging Face config (the vocabulary and special-token ids come from the trained tokenizer)."""

from __future__ import annotations

from typing import Any

from mtp_bench.suite.presets import PRESETS


def preset_config(name: str, vocab_size: int, eos_id: int, pad_id: int, overrides: dict[str, Any]) -> Any:
    from transformers import AutoConfig

    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; presets: {', '.join(sorted(PRESETS))}")
    model_type, fields = PRESETS[name]
    values = {**fields, **overrides}
    return AutoConfig.for_model(
        model_type, vocab_size=vocab_size, bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=pad_id, **values
    )
