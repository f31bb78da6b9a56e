"""Model-agnostic access to the parts of a Hugging Face causal LM, for methods that add predictors to it.

Multi-token methods need more than ``model(...).logits``: the input of the last decoder layer (extra transformer
heads read it), the final hidden state (Medusa heads), the token embeddings and the LM head (DeepSeek modules), a
decoder layer run on its own with a mask and positions, and KV-cached forwards for self-speculative drafting.
This module finds those parts for Llama, Qwen2, Gemma-style (scaled embeddings, logit soft-capping) and GPT-2 models
without copying any modelling code: a hook on the last decoder layer records the exact arguments the model passed to
it (mask in the kernel's form, rotary embeddings, positions), and extra blocks are called with the same arguments.

Method API side: imports stdlib, torch, transformers (lazily) and :mod:`mtp_bench.api` only.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtp_bench.api import IGNORE_INDEX, as_input_embedding, model_attention_mask

_LAYER_LISTS = ("layers", "h", "blocks", "layer")
_FINAL_NORMS = ("norm", "ln_f", "final_layernorm", "final_layer_norm", "norm_f")
_CACHE_NAMES = ("cache", "past_key_values", "past_key_value", "layer_past")


class UnsupportedModelError(TypeError):
    """The model's layout is not one this module can take apart; the message names the missing piece."""


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
    call = {k: v for k, v in arguments.items() if k not in _CACHE_NAMES and k != "use_cache"}
    cache_name = next((name for name in _CACHE_NAMES if name in names), None)
    if cache_name is not None:
        call[cache_name] = cache
    if "use_cache" in names:
        call["use_cache"] = cache is not None
    output = layer(hidden, **call)
    return output[0] if isinstance(output, tuple) else output


def layer_arguments(anat: Anatomy, hidden: Tensor, position_ids: Tensor, allowed: Tensor) -> dict[str, Any]:
    """Arguments to run a copy of the model's last decoder layer outside the model: ``allowed`` [B, Tq, Tk] (True =
    may attend; key j is position j, cached ones included) narrowed to the layer's sliding window if it has one, in
    the form the attention kernel reads; the positions [B, Tq]; for rotary models their rotary embeddings."""
    config = anat.config
    layer_types = getattr(config, "layer_types", None)
    layer_type = layer_types[int(getattr(config, "num_hidden_layers", len(layer_types))) - 1] if layer_types else None
    window = getattr(config, "sliding_window", None)
    if layer_type == "sliding_attention" and window:
        keys = torch.arange(allowed.size(-1), device=allowed.device)
        allowed = allowed & (position_ids[:, :, None] - keys[None, None, :] < window)
    arguments: dict[str, Any] = {"attention_mask": model_attention_mask(allowed, anat.model),
                                 "position_ids": position_ids}
    if anat.rotary is not None:
        if "layer_type" in inspect.signature(anat.rotary.forward).parameters:  # per-layer-type rotary (Gemma 3)
            arguments["position_embeddings"] = anat.rotary(hidden, position_ids, layer_type)
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
    :func:`mtp_bench.api.plain_forward_inputs`), with the last layer's input, output and arguments."""
    anat = anatomy(model)
    with capture_last_layer(anat) as capture:
        hidden = anat.backbone(**inputs, use_cache=False).last_hidden_state
    arguments = {k: v for k, v in capture.arguments.items() if k not in _CACHE_NAMES and k != "use_cache"}
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


def target_loss(logits_of: Any, hidden: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(summed cross-entropy, number correct) of a head over the positions that have a target. The head
    (``logits_of``: hidden [N, d] -> logits [N, V]) runs on those positions only: no full-vocabulary logits for
    prompt or padding positions."""
    valid = targets != IGNORE_INDEX
    logits, chosen = logits_of(hidden[valid]), targets[valid]
    correct = (logits.detach().argmax(-1) == chosen).sum()
    return nn.functional.cross_entropy(logits.float(), chosen, reduction="sum"), correct


# --------------------------------------------------------------------------------------- KV-cached decoding ----


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


def custom_attention(model: nn.Module, allowed: Tensor, query_positions: Tensor, key_positions: Tensor) -> Any:
    """The ``attention_mask`` argument for an arbitrary pattern ``allowed`` [B, Tq, Tk] that keeps the model's sliding
    windows (by position id): a custom 4D mask reaches every layer unchanged, so sliding-window layers need their own
    (a mapping layer type -> mask, which Gemma 2/3 and Qwen2 accept), or the narrowed mask when all layers slide."""
    anat = anatomy(model)
    window = getattr(anat.config, "sliding_window", None)
    layer_types = set(getattr(anat.config, "layer_types", None) or [])
    if not window or (layer_types and "sliding_attention" not in layer_types):
        return model_attention_mask(allowed, model)
    narrowed = allowed & (query_positions[:, :, None] - key_positions[:, None, :] < window)
    if not layer_types:  # Mistral-style: every layer slides
        return model_attention_mask(narrowed, model)
    masks = {layer_type: model_attention_mask(allowed, model) for layer_type in layer_types}
    masks["sliding_attention"] = model_attention_mask(narrowed, model)
    return masks


class RegisterDrafter:
    """Self-speculative drafting with MuToR registers (satisfies :class:`mtp_bench.api.Drafter`).

    After each real token x_t that may end the accepted prefix, k registers are appended in the same forward as the
    verifier's tokens: the one for offset d (2..k+1) has the position id of x_{t+d-1} (exactly as in training),
    attends to every real token up to x_t and to itself, and its prediction drafts x_{t+d}. Real tokens never see
    registers, so the verifier's logits are those of the plain model; registers sit after all real tokens in the
    cache and leave it when the decoder crops it to the accepted length.
    """

    def __init__(self, model: nn.Module, register: Tensor, k: int):
        self.model, self.register, self.max_drafts = model, register, k
        self.anat = anatomy(model)
        self.cache_keyword = cache_keyword(model)
        self._drafts: dict[int, list[int]] = {}

    @torch.inference_mode()
    def forward(self, input_ids: Tensor, cache: Any, past_length: int, prefill: bool = False,
                bidirectional: bool = False) -> Tensor:
        n, k, device = input_ids.numel(), self.max_drafts, input_ids.device
        anchors = [n - 1] if prefill else list(range(n))  # a prefill is only ever continued after its last token
        step = torch.arange(n, device=device)
        real_allowed = step[None, :] <= step[:, None]
        if bidirectional:
            real_allowed = torch.ones_like(real_allowed)
        slots = len(anchors) * k
        total = n + slots
        allowed = torch.zeros(total, past_length + total, dtype=torch.bool, device=device)
        allowed[:, :past_length] = True
        allowed[:n, past_length : past_length + n] = real_allowed
        anchor_of_slot = torch.tensor(anchors, device=device).repeat_interleave(k)
        offset_of_slot = torch.arange(2, k + 2, device=device).repeat(len(anchors))
        allowed[n:, past_length : past_length + n] = real_allowed[anchor_of_slot]
        allowed[n:, past_length + n :] = torch.eye(slots, dtype=torch.bool, device=device)
        positions = torch.cat([past_length + step, past_length + anchor_of_slot + offset_of_slot - 1])
        embeddings = self.anat.embed(input_ids.reshape(1, n))
        registers = as_input_embedding(self.register, self.anat.embed_tokens, embeddings.dtype).expand(1, slots, -1)
        # Sliding windows are measured from each query's anchor, as in training: a register sees its anchor's keys.
        window_at = torch.cat([past_length + step, past_length + anchor_of_slot])
        keys = torch.cat([torch.arange(past_length, device=device), window_at])
        mask = custom_attention(self.anat.model, allowed[None], window_at[None], keys[None])
        logits = self.model(
            inputs_embeds=torch.cat([embeddings, registers], dim=1),
            position_ids=positions[None],
            attention_mask=mask,
            **{self.cache_keyword: cache},
            use_cache=True,
        ).logits[0]
        drafted = logits[n:].argmax(-1).view(len(anchors), k).tolist()
        self._drafts = dict(zip(anchors, drafted))
        return logits[:n]

    def accept(self, kept: int, next_token: int) -> list[int]:
        return self._drafts.get(kept - 1, [])


# -------------------------------------------------------------------------------------- saving the heads ----

HEADS_WEIGHTS = "heads.safetensors"
HEADS_CONFIG = "heads.json"


def save_heads(extra: nn.Module, directory: Path, method: str, params: dict[str, Any]) -> None:
    """Write a method's extra modules and the settings that rebuild them (read back by :func:`heads_config`)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: value.detach().cpu().contiguous() for name, value in extra.state_dict().items()}
    save_file(state, str(directory / HEADS_WEIGHTS))
    (directory / HEADS_CONFIG).write_text(json.dumps({"method": method, "params": params}, indent=2))


def heads_config(directory: Path, method: str) -> tuple[Path, dict[str, Any]]:
    """(folder holding the heads, the method's saved params) for an export folder or its ``extra`` subfolder."""
    directory = Path(directory)
    if not (directory / HEADS_CONFIG).is_file() and (directory / "extra" / HEADS_CONFIG).is_file():
        directory = directory / "extra"
    path = directory / HEADS_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"no saved heads in {directory} (expected {HEADS_CONFIG} beside {HEADS_WEIGHTS})")
    saved = json.loads(path.read_text())
    if saved.get("method") != method:
        raise ValueError(f"{path} holds heads of method {saved.get('method')!r}, not {method!r}")
    return directory, saved["params"]


def load_heads_state(extra: nn.Module, directory: Path) -> nn.Module:
    from safetensors.torch import load_file

    extra.load_state_dict(load_file(str(Path(directory) / HEADS_WEIGHTS)), strict=True)
    return extra
