"""Harness overhead: NTP training-step throughput through mtp-bench's shared loop versus a minimal hand-written
Hugging Face loop, on the same model (two copies of one initialisation), the same GSM8K batches and the same
optimiser settings.

- mtp-bench: ``Trainer.train_step`` with the NTP method, built by ``prepare(trial)`` exactly as a trial builds it
  (transform, loss sums, normalisation, non-finite check, clipping, AdamW, scheduler, metrics).
- reference: ``model(input_ids, attention_mask, labels).loss.backward()``, ``clip_grad_norm_``, ``AdamW.step()``,
  ``get_linear_schedule_with_warmup(...).step()``, ``zero_grad`` — what a user would write by hand.

Both use AdamW with the same lr and betas, no weight decay, clipping at 1.0 and a linear decay without warm-up (the
two schedules are then the same function), so the two copies follow the same trajectory: the per-step losses are
compared as a check that both loops compute the same thing.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from mtp_bench.api.batches import TokenBatch
from mtp_bench.bench.batches import batch_indices, make_batches, prepared_ntp, trainer_for
from mtp_bench.bench.context import RunContext, Settings
from mtp_bench.bench.report import Section, Table
from mtp_bench.bench.timing import interleave, spread

GOAL = 0.97  # mtp-bench throughput / reference throughput


class ReferenceLoop:
    """The minimal hand-written Hugging Face training loop (the overhead reference: deliberately not our code)."""

    def __init__(self, model: nn.Module, cfg: Any, total_steps: int, device: torch.device,
                 precision: torch.dtype | None):
        from transformers import get_linear_schedule_with_warmup

        self.model, self.device, self.precision, self.clip = model, device, precision, cfg.clip_grad_norm
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                           weight_decay=cfg.weight_decay)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, 0, total_steps)

    def step(self, batch: TokenBatch) -> tuple[float, float]:
        self.model.train()
        batch = batch.to(self.device)
        with torch.autocast(self.device.type, dtype=self.precision, enabled=self.precision is not None):
            loss = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip or math.inf)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()), float(grad_norm)


def run(settings: Settings) -> Section:
    sizes = settings.sizes
    context = RunContext.begin(settings)
    prepared = prepared_ntp(settings)
    trial = prepared.trial
    batches = make_batches(prepared, batch_indices(len(prepared.train_data.items), sizes))
    reference = ReferenceLoop(copy.deepcopy(prepared.module.model), trial.train, trial.train.max_steps,
                              prepared.device, prepared.precision)  # same weights: a copy before any step
    trainer = trainer_for(prepared, batches)

    def ours(index: int) -> tuple[float, float]:
        metrics = trainer.train_step(index)
        return metrics["train/loss"], metrics["train/grad_norm"]

    def theirs(index: int) -> tuple[float, float]:
        return reference.step(batches[index % len(batches)])

    timed = interleave({"mtp-bench": ours, "reference": theirs}, rounds=sizes.overhead_rounds,
                       warmup=sizes.overhead_warmup, device=prepared.device)
    throughput = spread([1.0 / r for r in timed.ratios("mtp-bench", "reference")])  # ours / reference
    cpu_clock = prepared.device.type == "cpu"  # CPU time says nothing about asynchronous GPU work
    cpu_throughput = spread([1.0 / r for r in timed.ratios("mtp-bench", "reference", cpu=cpu_clock)])
    real = [batches[(sizes.overhead_warmup + i) % len(batches)].n_real_tokens for i in range(sizes.overhead_rounds)]
    losses = [(a[0], b[0]) for a, b in zip(timed.results["mtp-bench"], timed.results["reference"])]
    loss_gap = max(abs(a - b) for a, b in losses)
    rows = []
    for name, label in (("reference", "hand-written HF loop"), ("mtp-bench", "mtp-bench `Trainer.train_step` (NTP)")):
        seconds, cpu = spread(timed.seconds[name]), spread(timed.cpu_seconds[name])
        tokens_per_s = spread([n / s for n, s in zip(real, timed.seconds[name])])
        ratios = ["1 (reference)"] * 2 if name == "reference" else [f"**{throughput.text()}**", cpu_throughput.text()]
        rows.append([label, seconds.text(), *([cpu.text()] if cpu_clock else []), tokens_per_s.text(0),
                     *ratios[: 1 + cpu_clock]])
    table = Table(["training loop", "step time (s)", *(["CPU time a step (s)"] if cpu_clock else []), "real tokens/s",
                   "throughput vs reference", *(["same, from CPU time"] if cpu_clock else [])], rows)
    verdict = "meets" if throughput.median >= GOAL else "misses"
    model = trial.model.preset or trial.model.pretrained
    n_params = sum(p.numel() for p in prepared.module.parameters())
    return Section(
        key="overhead",
        title="Harness overhead: mtp-bench's loop versus a hand-written Hugging Face loop",
        method=(
            f"NTP on `{model}` ({n_params / 1e6:.2f}M parameters, {prepared.device}, "
            f"{str(prepared.precision or 'fp32').replace('torch.', '')}), {len(batches)} fixed GSM8K training "
            f"batches of {sizes.batch_size} (paper prompt format, tokenizer trained on GSM8K, mean "
            f"{sum(real) / len(real):.0f} real tokens a step), AdamW lr {trial.train.lr:g}, clipping "
            f"{trial.train.clip_grad_norm}, linear decay. {sizes.overhead_warmup} warm-up round(s), then "
            f"{sizes.overhead_rounds} interleaved rounds of one step each; the ratio is the median of per-round "
            "ratios (same batch, adjacent in time). Reference: `model(input_ids, attention_mask, labels)` + "
            "`backward` + `clip_grad_norm_` + `AdamW.step` + `get_linear_schedule_with_warmup` + `zero_grad`."
        ),
        tables=[table],
        reading=(
            f"mtp-bench trains at {throughput.median:.3f}× the hand-written loop's throughput "
            f"(IQR {throughput.q1:.3f}–{throughput.q3:.3f}"
            + (f"; {cpu_throughput.median:.3f} from CPU time, which other processes' load does not inflate"
               if cpu_clock else "") + f"); it {verdict} the ≥ {GOAL} goal."
        ),
        notes=[f"Same computation: the two copies' losses differ by at most {loss_gap:.2e} over "
               f"{len(losses)} measured steps (first: {losses[0][0]:.5f} vs {losses[0][1]:.5f})."],
        context=context.end(),
    )
