"""Model-agnostic access to the parts of a Hugging Face causal LM, for methods that add predictors to it.

Multi-token methods need more than ``model(...).logits``: the input of the last decoder layer (extra transformer
heads read it), the final hidden state (Medusa heads), the token embeddings and the LM head (DeepSeek modules), a
decoder layer run on its own with a mask and positions, and KV-cached forwards for self-speculative drafting.
This module finds those parts for Llama, Qwen2, Gemma-style (scaled embeddings, logit soft-capping) and GPT-2 models
without copying any modelling code: a hook on the last decoder layer records the exact arguments the model passed to
it (mask in the kernel's form, rotary embeddings, positions), and extra blocks are called with the same arguments.

Part of the method toolkit: imports stdlib, torch and the toolkit's own modules only.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mtp_bench.api.masks import model_attention_mask, narrow_to_window
from mtp_bench.errors import UnsupportedModelError

_LAYER_LISTS = ("layers", "h", "blocks", "layer")
_FINAL_NORMS = ("norm", "ln_f", "final_layernorm", "final_layer_norm", "norm_f")
CACHE_NAMES = ("cache", "past_key_values", "past_key_value", "layer_past")


@dataclass(frozen=True)
class Anatomy:
    """The parts of one causal LM (wrappers such as peft's removed; LoRA layers stay in place inside them)."""

    model: nn.Module  # the *ForCausalLM
    backbone: nn.Module  # the decoder stack: embeddings -> layers -> final norm
    embed_tokens: nn.Module  # token embeddings (Gemma's module scales them itself)
    layers: nn.ModuleList
    final_norm: nn.Module
    lm_head: nn.Module
    rotary: nn.Module | None  # rotary-embedding module, None for learned positions (GPT-2)
    logit_softcap: float | None  # Gemma 2's final soft-capping

    @property
    def config(self) -> Any:
        return getattr(self.model.config, "get_text_config", lambda: self.model.config)()

    @property
    def hidden_size(self) -> int:
        return int(self.embed_tokens.weight.shape[1])

    @property
    def last_layer(self) -> nn.Module:
        return self.layers[int(getattr(self.config, "num_hidden_layers", len(self.layers))) - 1]

    @property
    def norm_eps(self) -> float:
        names = ("rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps")
        return float(next((v for v in (getattr(self.config, n, None) for n in names) if v is not None), 1e-6))

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.embed_tokens(input_ids)

    def logits(self, normed_hidden: Tensor) -> Tensor:
        """The LM head on final-normed hidden states, soft-capped where the model does so."""
        logits = self.lm_head(normed_hidden)
        if self.logit_softcap:
            logits = torch.tanh(logits / self.logit_softcap) * self.logit_softcap
        return logits


def unwrap(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside peft / DDP / FSDP-style wrappers."""
    while True:
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), nn.Module) and not hasattr(model, "config"):
            model = model.module
        else:
            return model


def _first_attribute(owner: nn.Module, names: tuple[str, ...]) -> Any:
    return next((value for value in (getattr(owner, name, None) for name in names) if value is not None), None)


def anatomy(model: nn.Module) -> Anatomy:
    """Find the parts of a causal LM; raises :class:`UnsupportedModelError` naming what is missing."""
    causal_lm = unwrap(model)
    kind = type(causal_lm).__name__
    backbone = getattr(causal_lm, "base_model", None)
    if backbone is None or backbone is causal_lm:
        raise UnsupportedModelError(f"{kind}: no decoder stack (expected a *ForCausalLM with .model or .transformer)")
    layers = _first_attribute(backbone, _LAYER_LISTS)
    final_norm = _first_attribute(backbone, _FINAL_NORMS)
    lm_head = causal_lm.get_output_embeddings()
    missing = [name for name, part in (("decoder layers", layers), ("final norm", final_norm), ("LM head", lm_head))
               if part is None]
    if missing:
        raise UnsupportedModelError(f"{kind}: could not find its {', '.join(missing)}")
    config = getattr(causal_lm.config, "get_text_config", lambda: causal_lm.config)()
    return Anatomy(
        model=causal_lm,
        backbone=backbone,
        embed_tokens=causal_lm.get_input_embeddings(),
        layers=layers,
        final_norm=final_norm,
        lm_head=lm_head,
        rotary=getattr(backbone, "rotary_emb", None),
        logit_softcap=getattr(config, "final_logit_softcapping", None),
    )


# -------------------------------------------------------------------------------------- running layers ----


def _signature(layer: nn.Module) -> inspect.Signature:
    return inspect.signature(layer.forward)  # follows functools.wraps to the real forward


def layer_call_arguments(layer: nn.Module, args: tuple, kwargs: dict) -> tuple[Tensor, dict[str, Any]]:
    """(hidden input, every other argument by name) of one call of a decoder layer, whatever the mix of
    positional and keyword arguments the model used (GPT-2 passes the cache and mask positionally)."""
    signature = _signature(layer)
    bound = signature.bind(*args, **kwargs).arguments
    parameters = list(signature.parameters.values())
    hidden = bound.pop(parameters[0].name)
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            bound.update(bound.pop(parameter.name, {}))
    return hidden, bound


def run_layer(layer: nn.Module, hidden: Tensor, arguments: dict[str, Any], cache: Any = None) -> Tensor:
    """Run one decoder layer on ``hidden`` with ``arguments`` (from :func:`capture_last_layer` or
    :func:`layer_arguments`), with ``cache`` as its KV cache (None: no cache)."""
    names = _signature(layer).parameters
    call = {k: v for k, v in arguments.items() if k not in CACHE_NAMES and k != "use_cache"}
    cache_name = next((name for name in CACHE_NAMES if name in names), None)
    if cache_name is not None:
        call[cache_name] = cache
    if "use_cache" in names:
        call["use_cache"] = cache is not None
    output = layer(hidden, **call)
    return output[0] if isinstance(output, tuple) else output


def last_layer_type(anat: Anatomy) -> str | None:
    """The last decoder layer's attention kind (``sliding_attention``, ``full_attention``) where the model has
    several kinds, else None."""
    config = anat.config
    layer_types = getattr(config, "layer_types", None)
    return layer_types[int(getattr(config, "num_hidden_layers", len(layer_types))) - 1] if layer_types else None


def last_layer_mask(anat: Anatomy, allowed: Tensor, position_ids: Tensor) -> Tensor:
    """The mask to run a copy of the last decoder layer outside the model: ``allowed`` [B, Tq, Tk] (True = may
    attend; key j is position j, cached ones included) narrowed to the layer's sliding window if it has one (by the
    queries' positions ``position_ids`` [B, Tq]), in the form the attention kernel reads."""
    window = getattr(anat.config, "sliding_window", None)
    if last_layer_type(anat) == "sliding_attention" and window:
        allowed = narrow_to_window(allowed, window, position_ids)
    return model_attention_mask(allowed, anat.model)


def layer_arguments(anat: Anatomy, hidden: Tensor, position_ids: Tensor, allowed: Tensor) -> dict[str, Any]:
    """Arguments to run a copy of the model's last decoder layer outside the model: its mask
    (:func:`last_layer_mask`), the positions [B, Tq] and, for rotary models, their rotary embeddings."""
    arguments: dict[str, Any] = {"attention_mask": last_layer_mask(anat, allowed, position_ids),
                                 "position_ids": position_ids}
    if anat.rotary is not None:
        if "layer_type" in inspect.signature(anat.rotary.forward).parameters:  # per-layer-type rotary (Gemma 3)
            arguments["position_embeddings"] = anat.rotary(hidden, position_ids, last_layer_type(anat))
        else:
            arguments["position_embeddings"] = anat.rotary(hidden, position_ids)
    return arguments


@dataclass
class LayerCapture:
    """What the last decoder layer saw and produced in one forward pass."""

    input: Tensor | None = None  # hidden state fed to the last layer
    arguments: dict[str, Any] = field(default_factory=dict)  # mask, positions, rotary embeddings, cache
    output: Tensor | None = None  # its output, before the final norm
    final: Tensor | None = None  # the final norm's output (what the LM head reads)


@contextmanager
def capture_last_layer(anat: Anatomy) -> Iterator[LayerCapture]:
    """Record the last decoder layer's call, output and the final norm's output during the forwards inside."""
    capture = LayerCapture()
    layer = anat.last_layer

    def before(module: nn.Module, args: tuple, kwargs: dict) -> None:
        capture.input, capture.arguments = layer_call_arguments(module, args, kwargs)

    def after(module: nn.Module, args: tuple, output: Any) -> None:
        capture.output = output[0] if isinstance(output, tuple) else output

    def after_norm(module: nn.Module, args: tuple, output: Tensor) -> None:
        capture.final = output

    handles = [layer.register_forward_pre_hook(before, with_kwargs=True), layer.register_forward_hook(after),
               anat.final_norm.register_forward_hook(after_norm)]
    try:
        yield capture
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class TrunkOutput:
    hidden: Tensor  # final-normed hidden states [B, T, d]: what the LM head reads
    last_input: Tensor  # input of the last decoder layer
    last_output: Tensor  # output of the last decoder layer (before the final norm)
    layer_arguments: dict[str, Any]  # the other arguments of the last layer (mask, positions, rotary embeddings)


def run_trunk(model: nn.Module, inputs: dict[str, Tensor]) -> TrunkOutput:
    """One pass of the decoder stack (no LM head, no KV cache) on ``inputs`` (e.g. from
    :func:`mtp_bench.api.masks.plain_forward_inputs`), with the last layer's input, output and arguments."""
    anat = anatomy(model)
    with capture_last_layer(anat) as capture:
        hidden = anat.backbone(**inputs, use_cache=False).last_hidden_state
    arguments = {k: v for k, v in capture.arguments.items() if k not in CACHE_NAMES and k != "use_cache"}
    return TrunkOutput(hidden, capture.input, capture.output, arguments)


def new_block(anat: Anatomy, init: str = "last_block") -> nn.Module:
    """A decoder layer of the model's own architecture: a copy of the last one (``last_block``) or the same layer
    re-initialised with the model's own scheme (``random``). Build it before LoRA wraps the model."""
    block = copy.deepcopy(anat.last_layer)
    if init == "random":
        for parameter in block.parameters():
            parameter._is_hf_initialized = False  # transformers' init helpers skip tensors flagged as done
        for module in block.modules():
            anat.model._init_weights(module)
    elif init != "last_block":
        raise ValueError(f"unknown block init {init!r} (last_block or random)")
    return block.requires_grad_(True)


def as_input_embedding(vector: Tensor, embedding: nn.Module, dtype: torch.dtype) -> Tensor:
    """A learned vector in the space of the embedding table's rows (MuToR's register), as the model's embedding
    module outputs a row: Gemma-style modules multiply every row by ``embed_scale`` (sqrt(hidden)) in their
    forward, so a vector fed beside them through ``inputs_embeds`` is scaled alike, as a ``<reg>`` vocabulary row
    would be."""
    vector = vector.to(dtype)
    scale = getattr(embedding, "embed_scale", None)
    if scale is None:
        return vector
    return vector * torch.as_tensor(scale, device=vector.device).to(dtype)
