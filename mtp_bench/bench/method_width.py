"""Method cost at a realistic width: every method's forward + backward on one ~110M-parameter Llama (width 768,
12 layers, 12 heads, a 23K-row LM head) built from a config, on the same GSM8K batches; plus what both sizes of the
method-cost part count per step (positions the decoder computes, FLOPs).

At this size the per-step costs that differ between methods — extra positions, extra blocks, extra LM-head rows —
are a realistic share of the step, unlike on the 0.9M-parameter tiny model where attention and per-call overheads
dominate. Seven copies of the model with their optimiser states would not fit a small machine, so every variant
shares one model (each method adds its own extra modules to it) and the timed step is forward + backward: the
optimiser step, the same for every method but for its extra parameters, is left out. Peak memory comes from a fresh
process per method that trains one full step (AdamW included), as for the tiny model.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import torch

from mtp_bench.bench.batches import batch_indices
from mtp_bench.bench.context import Settings
from mtp_bench.bench.memory import ProbeServer
from mtp_bench.bench.timing import Interleaved, interleave
from mtp_bench.suite.presets import PACKAGED

# Llama at GPT-2-small / LlamaGen-B size; the BPE trained on GSM8K toward 32K rows stops at ~23K (the text runs out).
WIDE_MODEL = {"preset": "tiny-llama", "tokenizer_vocab_size": 32000, "config_overrides": {
    "hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 12,
    "num_key_value_heads": 12}}
QUICK_WIDE_MODEL = {"preset": "tiny-llama", "tokenizer_vocab_size": 256, "config_overrides": {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
    "num_key_value_heads": 4}}
WIDE_ROUNDS, WIDE_WARMUP, WIDE_MEMORY_STEPS = 2, 1, 1  # ~20 s a step a variant on 2 cores
# A real pretrained model, measured the same way when its package is installed (not under --quick): SmolLM2-135M-
# Instruct, whose weights are the Q4_1 GGUF file's de-quantised (not the original bf16 checkpoint; the cost is the
# same), with its own 49K-token tokenizer, grouped-query attention and 30 layers.
PRETRAINED_MODEL = {"preset": "smollm2-135m"}


def wide_settings(settings: Settings) -> Settings:
    """``settings`` with the realistic-width model (a small stand-in under ``--quick``)."""
    model = QUICK_WIDE_MODEL if settings.sizes.quick else WIDE_MODEL
    return dataclasses.replace(settings, sizes=dataclasses.replace(settings.sizes, model=model))


def pretrained_settings(settings: Settings, model: dict[str, Any] | None = None) -> tuple[Settings | None, str]:
    """``settings`` with the pretrained model (``model``, default :data:`PRETRAINED_MODEL`), or None and why not:
    under ``--quick`` (unless a ``model`` is given), or when its package or the gguf package is not installed."""
    from mtp_bench.models.gguf import GgufError, check, source_file
    from mtp_bench.suite.config import ModelConfig

    if settings.sizes.quick and model is None:
        return None, "not measured under --quick"
    model = model or PRETRAINED_MODEL
    try:
        path = source_file(ModelConfig(**model))
        if path is not None:
            check(path)
    except GgufError as exc:
        return None, f"not measured: {exc}"
    return dataclasses.replace(settings, sizes=dataclasses.replace(settings.sizes, model=model)), ""


# ------------------------------------------------------------------------------------------ step counters ----
def decoder_stack(model: Any) -> Any:
    """The module every method's forward passes go through (head methods run it without the LM head)."""
    from mtp_bench.api.anatomy import UnsupportedModelError, anatomy

    try:
        return anatomy(model).backbone
    except UnsupportedModelError:
        return model


class PaddedPositions:
    """Counts batch x length of every forward through a model's decoder stack: the positions its kernels compute,
    padding included."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}

    def watch(self, key: str, model: Any) -> None:
        def hook(module: Any, args: tuple, kwargs: dict) -> None:
            inputs = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
            inputs = inputs if inputs is not None else args[0]
            self.count[key] = self.count.get(key, 0) + inputs.shape[0] * inputs.shape[1]

        decoder_stack(model).register_forward_pre_hook(hook, with_kwargs=True)

    def take(self, key: str) -> int:
        return self.count.pop(key, 0)


def flop_counter() -> Any:
    """A ``FlopCounterMode`` (matrix products and attention) that also counts the CPU flash-attention kernel."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    def backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: forward,
               aten._scaled_dot_product_flash_attention_for_cpu_backward: backward}
    return FlopCounterMode(display=False, custom_mapping=mapping)


@dataclasses.dataclass
class Measured:
    """One size's measurements, keyed by variant (``ntp``, ``mutor bidir``, ...)."""

    model: str  # what was measured, in words
    seconds: dict[str, list[float]]
    time_ratios: dict[str, list[float]]  # per-round ratio to NTP with the same prompt attention
    cpu_ratios: dict[str, list[float]]
    positions: dict[str, float]  # ModelBatch.n_tokens per step
    padded: dict[str, float]  # decoder positions per step, padding included
    flops: dict[str, float]  # of one step (warm-up round)
    extra_params: dict[str, float]
    base_params: float
    memory: dict[str, dict[str, Any]]  # the probe's reply
    real_per_step: float
    bidirectional_ntp: list[float]  # per-round time ratio of NTP with the bidirectional prompt to causal NTP

    @classmethod
    def of(cls, timed: Interleaved, *, model: str, flops: dict[str, float], parameters: dict[str, dict[str, float]],
           memory: dict[str, dict[str, Any]], real_per_step: float, cpu_clock: bool) -> Measured:
        """Gather one size's measurements; ``timed`` returned (positions, padded positions) per step."""
        keys, rounds = list(timed.seconds), len(next(iter(timed.seconds.values())))
        return cls(
            model=model, seconds=timed.seconds,
            time_ratios={key: timed.ratios(key, baseline(key)) for key in keys},
            cpu_ratios={key: timed.ratios(key, baseline(key), cpu=True) for key in keys},
            positions={key: sum(r[0] for r in timed.results[key]) / rounds for key in keys},
            padded={key: sum(r[1] for r in timed.results[key]) / rounds for key in keys},
            flops=flops, extra_params={key: parameters[key]["params/extra"] for key in keys},
            base_params=parameters["ntp"]["params/base"], memory=memory, real_per_step=real_per_step,
            bidirectional_ntp=timed.ratios("ntp bidir", "ntp", cpu=cpu_clock) if "ntp bidir" in keys else [],
        )


def baseline(key: str) -> str:
    return "ntp bidir" if key.endswith(" bidir") else "ntp"


# ------------------------------------------------------------------------------------------------- run ----
def measure_wide(settings: Settings, chosen: list[tuple[str, bool, Any]], server: ProbeServer) -> Measured:
    """Interleaved forward + backward of every variant on one shared model, then a memory probe per variant."""
    from mtp_bench.train.loop import TrainModule
    from mtp_bench.trial.build import build_method, collate_items, count_parameters, prepare

    sizes = settings.sizes
    base = prepare(chosen[0][2])
    model, tokenizer, device = base.module.model, base.tokenizer, base.device
    items = base.train_data.items
    indices = batch_indices(len(items), sizes)
    keys = [f"{label}{' bidir' if bidir else ''}" for label, bidir, _ in chosen]
    modules, methods, batches = {}, {}, {}
    for key, (_, _, trial) in zip(keys, chosen):
        method = base.method if trial is chosen[0][2] else build_method(trial)
        extra = method.prepare(model, tokenizer) if trial is not chosen[0][2] else base.module.extra
        modules[key], methods[key] = TrainModule(model, extra.to(device) if extra is not None else None, method), method
        batches[key] = [collate_items(trial, tokenizer, [items[i] for i in group]).to(device) for group in indices]
    padded, flops = PaddedPositions(), {}
    padded.watch("model", model)

    def step(key: str):
        module, method = modules[key], methods[key]

        def call(index: int) -> tuple[int, int]:
            batch = method.transform(batches[key][index % len(indices)],
                                            torch.Generator(device=device).manual_seed(index))
            counter = flop_counter() if index < WIDE_WARMUP else None
            weights = method.loss_weights()
            with counter if counter is not None else contextlib.nullcontext():
                output = method.loss(module.model, module.extra, batch)
                terms = [weight * output.sums[name] / max(float(batch.counts[name]), 1.0)
                         for name, weight in weights.items() if weight]
                torch.stack(terms).sum().backward()
            module.zero_grad(set_to_none=True)
            if counter is not None:
                flops[key] = float(counter.get_total_flops())
            return batch.n_tokens, padded.take("model")
        return call

    server.ready()
    timed = interleave({key: step(key) for key in keys}, rounds=WIDE_ROUNDS, warmup=WIDE_WARMUP, device=device)
    parameters = {key: count_parameters(module) for key, module in modules.items()}
    real = [int(batches["ntp"][i % len(indices)].attention_mask.sum())
            for i in range(WIDE_WARMUP, WIDE_WARMUP + WIDE_ROUNDS)]
    description = _describe(model, device, base.precision, chosen[0][2].model.preset)
    modules.clear()
    del base, model  # the shared model goes before the memory probes
    memory = {key: server.measure(key, trial.model_dump(mode="json"), indices, WIDE_MEMORY_STEPS, settings.threads)
              for key, (_, _, trial) in zip(keys, chosen)}
    return Measured.of(timed, model=description, flops=flops, parameters=parameters, memory=memory,
                       real_per_step=sum(real) / len(real), cpu_clock=device.type != "cuda")


def _describe(model: Any, device: torch.device, precision: Any, preset: str | None = None) -> str:
    config = model.config
    size = sum(p.numel() for p in model.parameters())
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", heads)
    what = f"`{preset}` (pretrained; GGUF weights de-quantised, not the original checkpoint)" if preset in PACKAGED \
        else "Llama from a config"
    return (f"{what}, {size / 1e6:.1f}M parameters: width {config.hidden_size}, {config.num_hidden_layers} layers, "
            f"{heads} heads{f' ({kv} key-value)' if kv != heads else ''}, vocabulary {config.vocab_size:,} "
            f"({'tied' if config.tie_word_embeddings else 'untied'}), {config._attn_implementation} ({device}, "
            f"{str(precision or 'fp32').replace('torch.', '')})")
