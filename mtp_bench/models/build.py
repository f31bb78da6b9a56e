"""Build the model and tokenizer a trial starts from, and wrap it with LoRA adapters when asked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from mtp_bench.models.gguf import model_folder
from mtp_bench.models.presets import preset_config
from mtp_bench.models.tokenizer import trained_tokenizer
from mtp_bench.suite.config import LoraConfig, ModelConfig
from mtp_bench.suite.presets import PRESETS

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_tokenizer(cfg: ModelConfig, task_kind: str, training_texts: Callable[[], list[str]]) -> Any:
    """A tiny preset's tokenizer trained on the task's text, or the pretrained model's own tokenizer (a GGUF
    file's converted with it)."""
    if cfg.preset in PRESETS:
        return trained_tokenizer(task_kind, training_texts(), cfg.tokenizer_vocab_size)
    tokenizer = AutoTokenizer.from_pretrained(
        cfg.tokenizer or model_folder(cfg), revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
    )
    if tokenizer.pad_token_id is None:
        # Padding is masked out by the attention mask and labels, so reusing EOS as its id is safe.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def build_model(cfg: ModelConfig, tokenizer: Any, *, from_scratch: bool, seed: int) -> nn.Module:
    """A causal LM: pretrained weights (a GGUF file's through its cached conversion), or (tiny presets and
    ``from_scratch``) random weights from the config.

    Random initialisation is seeded by the trial's seed, so every method of a seed starts from the same weights.
    """
    dtype = _DTYPES[cfg.dtype]
    source = None if cfg.preset in PRESETS else model_folder(cfg)
    if cfg.preset in PRESETS:
        config = preset_config(
            cfg.preset, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, cfg.config_overrides
        )
    elif from_scratch:
        config = AutoConfig.from_pretrained(
            source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code, **cfg.config_overrides
        )
    else:
        config = None
    if config is not None:
        config._attn_implementation = cfg.attn_implementation
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(
                config, dtype=dtype, attn_implementation=cfg.attn_implementation,
                trust_remote_code=cfg.trust_remote_code,
            )
    else:
        model = AutoModelForCausalLM.from_pretrained(
            source,
            revision=cfg.revision,
            dtype=dtype,
            attn_implementation=cfg.attn_implementation,
            trust_remote_code=cfg.trust_remote_code,
            **cfg.config_overrides,
        )
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def apply_lora(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Wrap with peft LoRA adapters; only the adapters train. A method's extra modules live outside the base model
    (see ``Method.prepare``), so they stay trainable without being listed here."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_config = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


def merged(model: nn.Module) -> nn.Module:
    """The plain model: LoRA adapters merged into the weights (a no-op for fully trained models)."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model
