"""Speculative decoding: τ (tokens per verifier step), acceptance per horizon and wall-clock speedup over plain greedy
decoding of the same model (batch size 1), for every method that can draft — extra heads, DeepSeek MTP modules,
Medusa heads, MuToR registers — on a model trained briefly on a synthetic suite.

Each method trains its own model from the same initialisation through the shared loop (``prepare(trial)`` and
``Trainer``, batches from the data pipeline's ``StepSampler`` as ``run_trial`` draws them) on templated GSM8K-format
word problems (the ``word_problems`` task: long, regular answers, which drafting can exploit). Then, per held-out
prompt, plain greedy (:func:`~mtp_bench.evaluation.generate.greedy_generate`) and self-speculative decoding
(:func:`~mtp_bench.evaluation.speculative_decoding.speculative_generate` with the method's own drafter) run back to
back, in alternating order; the outputs must be identical (``mismatches``). A second table gives the speedup those τ
imply at realistic depth (:mod:`mtp_bench.bench.speculative_depth`).
"""

from __future__ import annotations

import gc
import time
from typing import Any

import torch

from mtp_bench.bench.batches import trials
from mtp_bench.bench.context import RunContext, Settings
from mtp_bench.bench.report import Section, Table
from mtp_bench.bench.speculative_depth import NEW_TOKENS, PROMPT_LENGTH, implied_rows, step_costs
from mtp_bench.bench.timing import interleave, spread

# Settings that give every drafter k drafts per step (method defaults otherwise: MuToR a 0.3, d 1..k+1).
DRAFTING = {
    "mtp_heads": lambda k: {"n_future": k + 1},
    "deepseek_mtp": lambda k: {"depth": k},
    "medusa": lambda k: {"n_heads": k},
    "mutor": lambda k: {"d_max": k + 1},
}
LR = 3e-3


def drafting_methods(k: int) -> list[dict[str, Any]]:
    """Installed methods with a drafter: the known ones with k drafts, others (a new plugin) with their defaults."""
    from mtp_bench import registry
    from mtp_bench.api.method import MethodContext, SupportsDrafting

    entries = []
    for name in registry.names(registry.METHODS):
        cls = registry.load(registry.METHODS, name)
        params = DRAFTING[name](k) if name in DRAFTING else {}
        method = cls(cls.Params.model_validate(params), MethodContext(train_mode="full"))
        if isinstance(method, SupportsDrafting):
            entries.append({"name": name, "params": params})
    return entries


def suite(settings: Settings, methods: list[dict[str, Any]]) -> dict[str, Any]:
    """Word problems as in ``suites/word_problems.yaml`` (2-3 steps, amounts up to 200), sized for a short run."""
    sizes = settings.sizes
    train_size = max(200, sizes.spec_steps * sizes.spec_batch)
    return {
        "name": "bench-speculative",
        "model": dict(sizes.spec_model),
        "data": {"task": "word_problems",
                 "params": {"min_steps": 2, "max_steps": 3, "operations": ["add", "sub", "mul", "div"],
                            "start_range": [2, 20], "add_range": [1, 10], "factor_range": [2, 3], "max_value": 200,
                            "train_size": train_size, "test_size": max(20, sizes.spec_prompts)}},
        "methods": methods,
        "baseline": methods[0]["name"],
        "train": {"max_steps": sizes.spec_steps, "lr": LR, "batch_size": sizes.spec_batch, "max_length": 256,
                  "warmup_ratio": 0.05, "schedule": "linear", "device": settings.device, "progress": False,
                  "checkpoint": False},
    }


def train(prepared: Any) -> float:
    """Train through the shared loop; returns the training seconds."""
    from mtp_bench.data.pipeline import StepSampler, collate
    from mtp_bench.train.loop import Trainer

    trial, items = prepared.trial, prepared.train_data.items
    sampler = StepSampler(len(items), batch_size=trial.train.batch_size, grad_accum=trial.train.grad_accum,
                          seed=trial.seed)

    def batches_for_step(step: int) -> list[Any]:
        return [collate([items[i] for i in indices], prepared.tokenizer.pad_token_id,
                        bidirectional_prompt=trial.bidirectional_prompt) for indices in sampler.micro_batches(step)]

    trainer = Trainer(prepared.module, prepared.method, trial.train, total_steps=trial.train.max_steps,
                      device=prepared.device, precision=prepared.precision, seed=trial.seed,
                      batches_for_step=batches_for_step, eval_steps=set())
    started = time.perf_counter()
    for step in range(trial.train.max_steps):
        trainer.train_step(step)
    return time.perf_counter() - started


def measure(prepared: Any, settings: Settings) -> dict[str, Any]:
    """Greedy and speculative decoding of the held-out prompts, interleaved prompt by prompt."""
    from mtp_bench.data.pipeline import encode_prompt
    from mtp_bench.evaluation.generate import greedy_generate
    from mtp_bench.evaluation.speculative_decoding import DraftStats, speculative_generate
    from mtp_bench.scorers.gsm8k import normalize_number, strict_answer

    sizes, tokenizer, device = settings.sizes, prepared.tokenizer, prepared.device
    method, extra = prepared.method, prepared.module.extra
    model = method.export(prepared.module.model, extra).eval()
    if extra is not None:
        extra.eval()
    drafter = method.make_drafter(model, extra, sizes.spec_k)
    if drafter is None:
        raise RuntimeError(f"{method.name} offered no drafter")
    examples = prepared.splits.test[: sizes.spec_prompts]
    prompts = [encode_prompt(tokenizer, example.prompt) for example in examples]
    ids = {"eos_id": tokenizer.eos_token_id}
    stats = DraftStats()

    def greedy(index: int, budget: int = sizes.spec_new_tokens) -> list[int]:
        return greedy_generate(model, [prompts[index]], pad_id=tokenizer.pad_token_id, max_new_tokens=budget,
                               batch_size=1, **ids)[0]

    def speculative(index: int, budget: int = sizes.spec_new_tokens, into: DraftStats = stats) -> list[int]:
        return speculative_generate(drafter, prompts[index], device=device, max_new_tokens=budget, stats=into, **ids)

    precision = prepared.precision
    with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
        greedy(0, 4)  # warm-up, timed on neither side
        speculative(0, 4, DraftStats())
        timed = interleave({"greedy": greedy, "speculative": speculative}, rounds=len(prompts), warmup=0,
                           device=device)
    outputs, references = timed.results["speculative"], timed.results["greedy"]
    correct = sum(strict_answer(tokenizer.decode(tokens, skip_special_tokens=True)) ==
                  normalize_number(str(example.record["gold"])) for tokens, example in zip(references, examples))
    return {
        "stats": stats.metrics(), "drafts": drafter.max_drafts,
        "speedup": spread([1.0 / r for r in timed.ratios("speculative", "greedy")]),
        "speedup_total": sum(timed.seconds["greedy"]) / sum(timed.seconds["speculative"]),
        "speedup_cpu": sum(timed.cpu_seconds["greedy"]) / sum(timed.cpu_seconds["speculative"]),
        "greedy_tps": sum(len(t) for t in references) / sum(timed.seconds["greedy"]),
        "mismatches": sum(a != b for a, b in zip(outputs, references)),
        "exact_match": correct / len(examples), "prompts": len(examples),
        "tokens": sum(len(t) for t in references),
    }


def run(settings: Settings) -> Section:
    from mtp_bench.models.device import resolve_device
    from mtp_bench.trial import prepare

    sizes = settings.sizes
    context = RunContext.begin(settings)
    methods = drafting_methods(sizes.spec_k)
    if not methods:
        return Section("speculative", "Speculative decoding", "Nothing to measure.", [],
                       "No installed method can draft.", context.end())
    chosen = trials(suite(settings, methods))
    rows, results = [], {}
    horizons = range(2, sizes.spec_k + 2)
    cpu_clock = resolve_device(settings.device).type == "cpu"  # CPU time says nothing about asynchronous GPU work
    for trial in chosen:
        prepared = prepare(trial)
        seconds = train(prepared)
        print(f"  {trial.method.name}: trained {trial.train.max_steps} steps in {seconds:.0f} s; decoding", flush=True)
        result = measure(prepared, settings)
        results[trial.method.name] = result
        stats = result["stats"]
        acceptance = " / ".join(f"{stats.get(f'acceptance/h{h}', 0.0):.2f}" for h in horizons)
        chosen_params = DRAFTING[trial.method.name](sizes.spec_k) if trial.method.name in DRAFTING else {}
        settings_text = ", ".join(f"{key} {value}" for key, value in chosen_params.items()) or "defaults"
        rows.append([f"`{trial.method.name}` ({settings_text})", f"{seconds:.0f}", f"{result['exact_match']:.2f}",
                     str(result["drafts"]), f"**{stats['tau']:.2f}**", acceptance, result["speedup"].text(2),
                     f"{result['speedup_total']:.2f}", *([f"{result['speedup_cpu']:.2f}"] if cpu_clock else []),
                     f"{result['greedy_tps']:.0f}", str(result["mismatches"])])
        del prepared
        gc.collect()
    table = Table(["drafting method", "train (s)", "greedy exact match", "drafts/step", "τ",
                   "acceptance " + " / ".join(f"h{h}" for h in horizons), "speedup per prompt", "speedup (total)",
                   *(["speedup (CPU time)"] if cpu_clock else []), "greedy tokens/s", "mismatches"], rows)
    from mtp_bench import registry

    drafters = [(registry.load(registry.METHODS, trial.method.name), trial.method.params) for trial in chosen]
    costs = step_costs(drafters, sizes.spec_k, sizes.quick, resolve_device(settings.device))
    implied = Table(["drafting method", "τ (tiny model, measured)", "greedy token at depth (ms)",
                     "verifier + drafter step at depth (ms)", "step cost (× greedy token)",
                     "implied speedup at depth", "speedup measured (tiny)"], implied_rows(results, costs))
    model = chosen[0].model.preset or chosen[0].model.pretrained
    mismatches = sum(r["mismatches"] for r in results.values())
    first = next(iter(results.values()), {"prompts": 0, "tokens": 0})
    return Section(
        key="speculative",
        title="Speculative decoding: τ and speedup with each method's own drafter",
        method=(
            f"Per method, `{model}` trained from the same initialisation for {sizes.spec_steps} steps (batch "
            f"{sizes.spec_batch}, AdamW lr {LR:g}, linear decay) on `word_problems` (2–3 step templated GSM8K-format "
            f"problems) through the shared loop, then {first['prompts']} held-out prompts decoded greedily (batch "
            f"size 1, at most {sizes.spec_new_tokens} new tokens) and with self-speculative decoding, "
            f"{sizes.spec_k} drafts per verifier step, alternating which goes first. τ = tokens per verifier step "
            "(the verifier's own token included); acceptance h*k* = share of steps whose draft of x_{t+k} was "
            "accepted; speedup = greedy time / speculative time (per-prompt median [IQR], total, and from CPU "
            "time); greedy exact match shows what the briefly trained model can do. **Implied at realistic depth** "
            f"(second table): on {costs['model']}, each method's drafter with {sizes.spec_k} drafts, the time of a "
            f"plain greedy token and of a speculative verifier step (drafter included), medians over prompts of "
            f"{PROMPT_LENGTH} tokens and {NEW_TOKENS} new tokens (interleaved, one warm-up); implied speedup = τ "
            "(measured on the tiny model above) × greedy token time / step time. It is an estimate: τ of a briefly "
            "trained tiny model, costs of a random-weight wide one."
        ),
        tables=[table, implied],
        reading=_reading(results, mismatches) + _implied_reading(results, costs),
        context=context.end(),
    )


def _reading(results: dict[str, dict[str, Any]], mismatches: int) -> str:
    def extremes(value: Any) -> str:
        low, high = min(results, key=value), max(results, key=value)
        return f"{value(low):.2f} ({low}) to {value(high):.2f} ({high})"

    return (f"τ ranges from {extremes(lambda m: results[m]['stats']['tau'])} tokens per verifier step, the wall-clock "
            f"speedup (total) from {extremes(lambda m: results[m]['speedup_total'])}; speculative outputs differ from "
            f"greedy in {mismatches} case(s) (must be 0). Speedup trails τ because every verifier step also runs the "
            "drafter: DeepSeek's sequential modules, the heads' extra blocks, MuToR's registers inside the "
            "verifier's own forward.")


def _implied_reading(results: dict[str, dict[str, Any]], costs: dict[str, Any]) -> str:
    implied = {name: result["stats"]["tau"] * costs["greedy"] / costs[name] for name, result in results.items()}
    if not implied:
        return ""
    text = ", ".join(f"{name} {value:.2f}×" for name, value in sorted(implied.items(), key=lambda item: -item[1]))
    return (f" Implied at {costs['depth']} (τ from the tiny models, step costs measured there): {text}; "
            "there a drafter's extra block is a small share of the verifier step.")
