"""Evaluation speed: generated tokens per second of our GSM8K scorer's batched greedy generation
(:func:`mtp_bench.evaluation.generate.greedy_generate`, KV cache, left padding) versus lm-eval's ``HFLM``
``generate_until`` (Hugging Face ``generate``) on the same in-memory model, prompts, batch size and token budget,
both stopping at EOS. The two must produce the same completions; the agreement rate is reported beside the speeds.

Generated tokens are counted the same way on both sides: up to and including the first EOS, else the whole budget.
lm-eval returns text, so its token counts are read from the tensors Hugging Face ``generate`` returns (a subclass of
``HFLM`` that only counts; the generation is lm-eval's own).
"""

from __future__ import annotations

from typing import Any

import torch

from mtp_bench.bench.batches import prepared_ntp
from mtp_bench.bench.context import RunContext, Settings
from mtp_bench.bench.report import Section, Table
from mtp_bench.bench.timing import interleave, spread


def count_generated(tokens: list[int], eos_id: int) -> int:
    return tokens.index(eos_id) + 1 if eos_id in tokens else len(tokens)


def counting_hflm(model: Any, tokenizer: Any, batch_size: int, precision: torch.dtype | None) -> Any:
    """lm-eval's ``HFLM`` on the in-memory model, counting the tokens its ``generate`` calls produce."""
    from lm_eval.models.huggingface import HFLM

    class CountingHFLM(HFLM):
        generated = 0

        def _model_generate(self, context, max_length, stop, **generation_kwargs):
            output = super()._model_generate(context, max_length, stop, **generation_kwargs)
            for row in output[:, context.shape[1]:].tolist():
                self.generated += count_generated(row, tokenizer.eos_token_id)
            return output

    return CountingHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                        mixed_precision_dtype=precision)


def run(settings: Settings) -> Section:
    from lm_eval.api.instance import Instance

    from mtp_bench.data.pipeline import encode_prompt
    from mtp_bench.evaluation.generate import greedy_generate

    sizes = settings.sizes
    context = RunContext.begin(settings)
    prepared = prepared_ntp(settings)
    trial = prepared.trial
    model = prepared.method.export(prepared.module.model, prepared.module.extra).eval()
    tokenizer, device, precision = prepared.tokenizer, prepared.device, prepared.precision
    examples = prepared.splits.test[: sizes.eval_prompts]
    prompts = [encode_prompt(tokenizer, example.prompt) for example in examples]
    budget, batch = sizes.eval_new_tokens, sizes.eval_batch
    lm = counting_hflm(model, tokenizer, batch, precision)
    gen_kwargs = {"until": [], "max_gen_toks": budget, "do_sample": False}

    def requests(chosen: list[Any]) -> list[Any]:
        return [Instance(request_type="generate_until", doc={}, arguments=(example.prompt, dict(gen_kwargs)), idx=i)
                for i, example in enumerate(chosen)]

    def ours(_: int, chosen: list[list[int]] = prompts, new: int = budget) -> tuple[list[str], int]:
        with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
            outputs = greedy_generate(model, chosen, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                                      max_new_tokens=new, batch_size=batch)
        texts = [tokenizer.decode(tokens, skip_special_tokens=True) for tokens in outputs]
        return texts, sum(count_generated(tokens, tokenizer.eos_token_id) for tokens in outputs)

    every_request = requests(examples)

    def theirs(_: int) -> tuple[list[str], int]:
        lm.generated = 0
        return lm.generate_until(every_request, disable_tqdm=True), lm.generated

    # warm-up on a small slice: kernel set-up and lazy imports are timed on neither side
    ours(0, prompts[:batch], min(budget, 4))
    lm.generate_until(requests(examples[:batch]), disable_tqdm=True)
    timed = interleave({"ours": ours, "lm-eval": theirs}, rounds=sizes.eval_rounds, warmup=0, device=device)

    ours_texts, ours_tokens = timed.results["ours"][0]
    their_texts, their_tokens = timed.results["lm-eval"][0]
    agree = sum(a == b for a, b in zip(ours_texts, their_texts))
    rows = []
    speeds = {}
    for name, label in (("lm-eval", "lm-eval `HFLM.generate_until` (HF `generate`)"),
                        ("ours", "mtp-bench `greedy_generate` (GSM8K scorer)")):
        tokens = timed.results[name][0][1]
        speeds[name] = spread([tokens / s for s in timed.seconds[name]])
        rows.append([label, str(tokens), spread(timed.seconds[name]).text(2), speeds[name].text(0)])
    ratio = spread([1.0 / r for r in timed.ratios("ours", "lm-eval")])
    cpu_ratio = spread([1.0 / r for r in timed.ratios("ours", "lm-eval", cpu=True)])
    in_cpu = f" ({cpu_ratio.median:.2f}× from CPU time)" if device.type == "cpu" else ""
    rows[1].append(f"**{ratio.text(2)}**")
    rows[0].append("1 (reference)")
    rows[0].append(f"{agree}/{len(examples)} identical")
    rows[1].append("")
    table = Table(["generation", "tokens generated", "seconds", "tokens/s", "speed vs lm-eval", "completions"], rows)
    model_name = trial.model.preset or trial.model.pretrained
    return Section(
        key="eval",
        title="Evaluation speed: our batched greedy generation versus lm-eval's HFLM",
        method=(
            f"The same in-memory `{model_name}` ({device}, {str(precision or 'fp32').replace('torch.', '')}, "
            f"GSM8K tokenizer, untrained weights), the first {len(examples)} GSM8K test prompts (paper format), "
            f"greedy, at most {budget} new tokens, stop at EOS, batch size {batch} on both sides. "
            f"{sizes.eval_rounds} interleaved round(s) after a small warm-up of each; tokens/s = generated tokens / "
            "wall-clock seconds of the whole call (tokenization and batching included on both sides)."
        ),
        tables=[table],
        reading=(
            f"Our generation runs at {ratio.median:.2f}× lm-eval's tokens/s{in_cpu}, "
            f"and {agree} of {len(examples)} completions are identical ({ours_tokens} vs {their_tokens} tokens)."
        ),
        notes=["Untrained weights rarely emit EOS, so most completions use the whole budget: both sides do the same, "
               "maximal work; the agreement check compares every generated token."],
        context=context.end(),
    )
