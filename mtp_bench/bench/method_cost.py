"""Method cost: step time, positions processed, extra parameters and peak memory of every installed method (default
settings) on the same GSM8K batches, through the shared loop; plus NTP and MuToR with the bidirectional prompt (the
MuToR paper's setting, where NTP loses the cheaper causal-mask attention path).

Time: every variant is built by ``prepare(trial)`` from one suite, then all train interleaved, one
``Trainer.train_step`` (forward, backward, optimiser step) each per round on the same batch. Positions are the
methods' own ``ModelBatch.n_tokens`` (real tokens plus any the method inserts: MuToR's registers).
Memory: a fresh process per variant prepares the same trial and trains ``memory_steps`` steps on the same batches
(:mod:`mtp_bench.bench.memory`): peak resident set over those steps and its growth over set-up on the CPU,
``torch.cuda.max_memory_allocated`` on a GPU.
"""

from __future__ import annotations

import gc
from typing import Any

from mtp_bench.bench.common import (
    RunContext,
    Settings,
    batch_indices,
    gsm8k_suite,
    interleave,
    make_batches,
    spread,
    trainer_for,
    trials,
)
from mtp_bench.bench.memory import ProbeServer
from mtp_bench.bench.report import Section, Table

BIDIRECTIONAL = ("ntp", "mutor")  # also run with the bidirectional prompt
PAPER_MUTOR_COST = 1.4  # MuToR paper: ~1.4x NTP wall-clock (GPU, registers in answers only)
MIB = 2**20



def variants(settings: Settings) -> list[tuple[str, bool, Any]]:
    """(label, bidirectional, trial) for every installed method (default settings), then the bidirectional ones."""
    from mtp_bench import registry

    names = registry.names(registry.METHODS)
    names = ["ntp", *[name for name in names if name != "ntp"]]  # NTP first: the baseline
    out = [(name, False, trial) for name, trial in zip(names, trials(gsm8k_suite(settings, [{"name": n} for n in
                                                                                           names])))]
    both = [name for name in BIDIRECTIONAL if name in names]
    out += [(name, True, trial) for name, trial in
            zip(both, trials(gsm8k_suite(settings, [{"name": n} for n in both], bidirectional=True)))]
    return out


def decoder_stack(model: Any) -> Any:
    """The module every method's forward passes go through (head methods run it without the LM head)."""
    from mtp_bench.models.anatomy import UnsupportedModelError, anatomy

    try:
        return anatomy(model).backbone
    except UnsupportedModelError:
        return model


# --------------------------------------------------------------------------------------------------- run ----
def run(settings: Settings) -> Section:
    context = RunContext.begin(settings)
    chosen = variants(settings)
    with ProbeServer().start(chosen[0][2].model_dump(mode="json")) as server:  # its imports overlap the set-up
        return _measure(settings, context, chosen, server)


def _measure(settings: Settings, context: RunContext, chosen: list[tuple[str, bool, Any]],
             server: ProbeServer) -> Section:
    from mtp_bench.trial import count_parameters, prepare

    sizes = settings.sizes
    prepared = [prepare(trial) for _, _, trial in chosen]
    counts = {len(p.train_data.items) for p in prepared}
    if len(counts) != 1:
        raise RuntimeError(f"variants tokenized different data ({sorted(counts)} examples): batches would differ")
    indices = batch_indices(counts.pop(), sizes)
    keys = [f"{label}{' bidir' if bidir else ''}" for label, bidir, _ in chosen]
    trainers = {key: trainer_for(p, make_batches(p, indices)) for key, p in zip(keys, prepared)}
    real = [batch.n_real_tokens for batch in make_batches(prepared[0], indices)]
    device = f"{prepared[0].device}, {str(prepared[0].precision or 'fp32').replace('torch.', '')}"

    padded: dict[str, int] = {}  # B x length of every forward through the model in the current step

    def count(key: str):
        def hook(module: Any, args: tuple, kwargs: dict) -> None:
            inputs = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
            inputs = inputs if inputs is not None else args[0]
            padded[key] += inputs.shape[0] * inputs.shape[1]
        return hook

    for key, p in zip(keys, prepared):
        decoder_stack(p.module.model).register_forward_pre_hook(count(key), with_kwargs=True)

    def step(key: str):
        def call(index: int) -> tuple[float, int]:
            padded[key] = 0
            return trainers[key].train_step(index)["train/step_tokens"], padded[key]
        return call

    server.ready()  # idle from here on: nothing else runs while the variants are timed
    timed = interleave({key: step(key) for key in keys}, rounds=sizes.method_rounds, warmup=sizes.method_warmup,
                       device=prepared[0].device)
    parameters = {key: count_parameters(p.module) for key, p in zip(keys, prepared)}
    trainers.clear()  # free the models before the memory probes
    del prepared
    gc.collect()
    probes = [server.measure(key, trial.model_dump(mode="json"), indices, sizes.memory_steps, settings.threads)
              for key, (_, _, trial) in zip(keys, chosen)]

    measured = range(sizes.method_warmup, sizes.method_warmup + sizes.method_rounds)
    real_per_step = sum(real[i % len(real)] for i in measured) / sizes.method_rounds
    positions = {key: sum(r[0] for r in timed.results[key]) / sizes.method_rounds for key in keys}
    computed = {key: sum(r[1] for r in timed.results[key]) / sizes.method_rounds for key in keys}
    on_gpu = probes[0]["kind"] == "cuda"
    cpu_clock = not on_gpu  # CPU time says nothing about asynchronous GPU work
    rows, summary = [], {}
    for (label, bidir, _), key, probe in zip(chosen, keys, probes):
        base = "ntp bidir" if bidir else "ntp"
        time_ratio = spread(timed.ratios(key, base))
        cpu_ratio = spread(timed.ratios(key, base, cpu=True)) if cpu_clock else time_ratio
        token_ratio = positions[key] / positions[base]
        padded_ratio = computed[key] / computed[base]
        extra, total = parameters[key]["params/extra"], parameters[key]["params/base"]
        summary[key] = (time_ratio.median, cpu_ratio.median, token_ratio, padded_ratio)
        rows.append([
            f"`{label}`", "bidirectional" if bidir else "causal", spread(timed.seconds[key]).text(),
            time_ratio.text(2), *([cpu_ratio.text(2)] if cpu_clock else []),
            f"{positions[key]:.0f} ({token_ratio:.2f}×)", f"{computed[key]:.0f} ({padded_ratio:.2f}×)",
            f"{extra:,.0f} ({100 * extra / total:.1f}%)", f"{probe['peak'] / MIB:.0f}",
            f"{(probe['peak'] - probe['before']) / MIB:.0f}",
        ])
    memory = "peak allocated (MiB)" if on_gpu else "peak RSS (MiB)"
    table = Table(["method", "prompt", "step time (s)", "× NTP time", *(["× NTP time (CPU)"] if cpu_clock else []),
                   "positions/step (× NTP)", "padded positions/step (× NTP)", "extra params (% of model)", memory,
                   "growth in steps (MiB)"], rows)
    model = chosen[0][2].model.preset or chosen[0][2].model.pretrained
    return Section(
        key="methods",
        title="Method cost: time, positions, parameters and memory per training step",
        method=(
            f"Every installed method with its default settings, on `{model}` ({device}), "
            f"{len(indices)} fixed GSM8K training batches of {sizes.batch_size} (paper prompt format, "
            f"{real_per_step:.0f} real tokens a step on average), AdamW, clipping 1.0. Time: "
            f"{sizes.method_warmup} warm-up round(s), then {sizes.method_rounds} rounds in which every variant runs "
            "one `Trainer.train_step` (forward + backward + optimiser step) on the same batch; ratios are medians "
            "of per-round ratios against NTP with the same prompt attention. Positions: `ModelBatch.n_tokens` (real "
            "tokens plus inserted ones; NTP's are the real tokens, so × NTP = positions per real token); padded "
            "positions: batch × length of the decoder stack's forward passes, what its kernels compute. "
            f"Memory: a fresh process per method, {sizes.memory_steps} step(s) after "
            "set-up" + (" (`torch.cuda.max_memory_allocated`; growth over the weights before the first step)."
                        if on_gpu else
                        "; peak RSS includes the Python, torch and data footprint, the growth is what training adds "
                        "(gradients, optimiser state, activations).")
        ),
        tables=[table],
        reading=_reading(summary, spread(timed.ratios("ntp bidir", "ntp", cpu=cpu_clock)).median
                         if "ntp bidir" in keys else None, cpu_clock),
        notes=["Defaults: " + "; ".join(f"`{label}` {trial.method.params or '{}'}" for label, bidir, trial in chosen
                                         if not bidir) + "."],
        context=context.end(),
    )


def _reading(summary: dict[str, tuple[float, float, float, float]], bidirectional_ntp: float | None,
             cpu_clock: bool) -> str:
    parts = []
    for key, setting in (("mutor", "causal prompt"), ("mutor bidir", "bidirectional prompt, the paper's setting")):
        if key in summary:
            wall, cpu, tokens, padded = summary[key]
            in_cpu = f" ({cpu:.2f}× in CPU time)" if cpu_clock else ""
            parts.append(f"MuToR ({setting}) takes {wall:.2f}× NTP's step time{in_cpu} for {tokens:.2f}× the "
                         f"positions ({padded:.2f}× once padded), {cpu / tokens:.2f}× NTP's cost per position")
    heads = [f"{key} {summary[key][0]:.2f}×" for key in summary if key not in ("ntp", "ntp bidir", "mutor",
                                                                               "mutor bidir")]
    text = "; ".join(parts) + (
        f". The paper measured ≈{PAPER_MUTOR_COST}× NTP's *step time* on GPU (Gemma 2B, 1M-GSM); at this tiny size "
        "attention, which grows with the square of the longer sequence, is a larger share of the step than in a "
        "2B model, so the CPU time ratio here overstates the GPU cost.")
    if heads:
        text += " Head methods, same positions as NTP: " + ", ".join(heads) + " NTP's step time."
    if bidirectional_ntp is not None:
        text += (f" NTP with the bidirectional prompt (4D mask) costs {bidirectional_ntp:.2f}× causal NTP"
                 f"{' in CPU time' if cpu_clock else ''}.")
    return text
