"""The one training loop every method goes through.

It owns the optimiser, schedule, gradient accumulation, loss normalisation, clipping, autocast, throughput
accounting, evaluation timing and checkpoints; a method only transforms batches and computes loss sums (see
:mod:`mtp_bench.api.method`). How sums become the objective (token or sequence means) is
:mod:`mtp_bench.train.normalise`; how a compute budget becomes a step count is :mod:`mtp_bench.train.budget`. It
knows no method by name, and nothing of MLflow or Ray: it reports through callbacks.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mtp_bench.api.batches import LossOutput, ModelBatch, TokenBatch
from mtp_bench.api.method import Method
from mtp_bench.errors import NonFiniteLossError
from mtp_bench.models.device import autocast
from mtp_bench.suite.config import TrainConfig
from mtp_bench.train.budget import budget_positions, steps_for_budget
from mtp_bench.train.normalise import TOKEN, split_sequences, step_denominators, unit_divisors
from mtp_bench.train.optim import build_optimizer, build_scheduler
from mtp_bench.train.sharding import local_optimizer_state, scalar, whole_optimizer_state


class TrainModule(nn.Module):
    """The base model and the method's extra modules as one module, so that DDP/FSDP wrap, sync and save them
    together. ``forward`` runs the method's loss and returns its sums (wrappers pass tensors only; the weights of the
    objective are the method's own declaration, :meth:`~mtp_bench.api.method.Method.loss_weights`)."""

    def __init__(self, model: nn.Module, extra: nn.Module | None, method: Method):
        super().__init__()
        self.model = model
        self.extra = extra
        self._method = method  # not a module: plain attribute

    def forward(self, batch: ModelBatch) -> dict[str, Tensor]:
        return self._method.loss(self.model, self.extra, batch).sums


@dataclass
class Distributed:
    """How the loop sees data parallelism; the single-process default needs nothing."""

    world_size: int = 1
    rank: int = 0
    all_reduce_sum: Callable[[Tensor], Tensor] = field(default=lambda t: t)
    wrapped: nn.Module | None = None  # the DDP/FSDP wrapper around the TrainModule, when there is one
    # Entered by every rank around what rank 0 does alone (evaluation, export): FSDP gathers the sharded weights.
    gathered: Callable[[], AbstractContextManager] = field(default=contextlib.nullcontext)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class LoopState:
    step: int = 0  # optimiser steps done
    tokens_seen: int = 0  # real tokens trained on, all ranks
    tokens_processed: int = 0  # positions the model ran over (real plus inserted), all ranks
    flops: float = 0.0  # estimated training FLOPs, all ranks (6 x parameters x positions)
    train_seconds: float = 0.0


@dataclass
class LoopCallbacks:
    """What the loop reports to. ``evaluate(step)`` returns metrics; ``checkpoint(step)`` saves state."""

    log: Callable[[dict[str, float], int], None] = lambda metrics, step: None
    evaluate: Callable[[int], dict[str, float]] | None = None
    checkpoint: Callable[[int], None] | None = None


class Trainer:
    """Trains ``module`` with ``method`` on micro-batches from ``batches_for_step``.

    ``batches_for_step(step)`` returns this rank's micro-batches of optimiser step ``step`` as CPU ``TokenBatch``es.
    """

    def __init__(
        self,
        module: TrainModule,
        method: Method,
        cfg: TrainConfig,
        *,
        total_steps: int,
        device: torch.device,
        precision: torch.dtype | None,
        seed: int,
        batches_for_step: Callable[[int], list[TokenBatch]],
        eval_steps: set[int],
        dist: Distributed | None = None,
    ):
        self.module, self.method, self.cfg = module, method, cfg
        self.total_steps, self.device, self.precision, self.seed = total_steps, device, precision, seed
        self.batches_for_step = batches_for_step
        self.eval_steps = eval_steps
        self.dist = dist or Distributed()
        self.forward_module = self.dist.wrapped or module
        self.parameters = [p for p in module.parameters() if p.requires_grad]
        if not self.parameters:
            raise ValueError("nothing to train: no parameter requires a gradient")
        self.n_forward_params = sum(p.numel() for p in module.parameters())
        budget = budget_positions(cfg, self.n_forward_params)
        if budget is not None:  # a compute budget: fewer steps, known before the schedule is built
            self.total_steps = steps_for_budget(self._positions_of_step, budget, total_steps,
                                                self.dist.all_reduce_sum, device)
        self.optimizer = build_optimizer(self.parameters, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.total_steps)
        self.scaler = torch.amp.GradScaler(device.type) if precision == torch.float16 else None
        self.state = LoopState()

    # ------------------------------------------------------------------------------------------- one step ----
    def _generator(self, step: int, index: int, tag: int = 0) -> torch.Generator:
        """Method randomness derived from (seed, step, unit): repeatable, and resumable mid-run. ``index`` numbers the
        unit within the whole step as the step sampler deals it out (a micro-batch: ``micro x world + rank``), so
        each example gets the same draws however the step is split across workers and accumulation."""
        generator = torch.Generator(device=self.device)
        # the trailing tag (0 for micro-batches, 1 for sequences) keeps the single-process draws of earlier versions
        generator.manual_seed(hash((self.seed, step, index, tag)) & 0x7FFF_FFFF_FFFF_FFFF)
        return generator

    def _sync_context(self, last_micro: bool):
        # DDP all-reduces once per step. FSDP has no no_sync here on purpose: it reduce-scatters every micro-batch
        # into sharded gradients (skipping that would hold a whole model's unsharded gradients on every rank).
        no_sync = getattr(self.forward_module, "no_sync", None)
        if no_sync is None or last_micro:
            return contextlib.nullcontext()
        return no_sync()

    def _units(self, step: int, batches: list[TokenBatch]) -> list[tuple[TokenBatch, torch.Generator]]:
        """What the method transforms, with its randomness: each micro-batch (``token`` normalisation) or each of
        its sequences (``sequence``; numbered by their place in the whole step, as the step sampler deals them out,
        so the draws do not depend on accumulation or the number of workers)."""
        if self.cfg.loss_normalisation == TOKEN:
            return [(batch, self._generator(step, micro * self.dist.world_size + self.dist.rank))
                    for micro, batch in enumerate(batches)]
        units = []
        for micro, batch in enumerate(batches):
            first = (micro * self.dist.world_size + self.dist.rank) * self.cfg.batch_size
            units += [(row, self._generator(step, first + index, tag=1))
                      for index, row in enumerate(split_sequences(batch))]
        return units

    @torch.no_grad()
    def _positions_of_step(self, step: int) -> int:
        """Positions this rank's model will process at ``step`` (for a compute budget)."""
        return sum(self.method.transform(batch.to(self.device), generator).n_tokens
                   for batch, generator in self._units(step, self.batches_for_step(step)))

    def train_step(self, step: int) -> dict[str, float]:
        self.module.train()
        token_batches = self.batches_for_step(step)
        mode = self.cfg.loss_normalisation
        units = [self.method.transform(batch.to(self.device), generator)
                 for batch, generator in self._units(step, token_batches)]
        denominators = step_denominators(units, mode, self.dist.all_reduce_sum, self.device)
        sums: dict[str, float] = {}
        weights = self.method.loss_weights()
        for index, unit in enumerate(units):
            divisors = unit_divisors(unit, mode)
            with self._sync_context(index == len(units) - 1):
                with autocast(self.device, self.precision):
                    output = self.method_loss(unit)
                objective = self._objective(output, weights, divisors, denominators)
                if not torch.isfinite(objective):
                    raise NonFiniteLossError(
                        f"non-finite loss at step {step + 1}: {self._describe(output, divisors, denominators)}")
                scaled = objective * self.dist.world_size  # DDP and FSDP average gradients over ranks; we want the sum
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            for name, value in output.sums.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) / divisors.get(name, 1.0)
        grad_norm = self._optimizer_step()
        real_tokens = sum(batch.n_real_tokens for batch in token_batches)
        return self._step_metrics(units, real_tokens, sums, denominators, weights, grad_norm)

    def method_loss(self, batch: ModelBatch) -> LossOutput:
        return LossOutput(sums=self.forward_module(batch))

    @staticmethod
    def _objective(output: LossOutput, weights: dict[str, float], divisors: dict[str, float],
                   denominators: dict[str, float]) -> Tensor:
        """This unit's share of the step's objective (see :mod:`mtp_bench.train.normalise`)."""
        terms = [
            weight * output.sums[name] / divisors.get(name, 1.0) / max(denominators.get(name, 0.0), 1.0)
            for name, weight in weights.items()
            if weight != 0.0 and name in output.sums
        ]
        if not terms:
            raise ValueError(f"the method's loss has no weighted term among {sorted(output.sums)}")
        return torch.stack([t.float() for t in terms]).sum()

    @staticmethod
    def _describe(output: LossOutput, divisors: dict[str, float], denominators: dict[str, float]) -> str:
        parts = [f"{name}={float(value.detach()) / divisors.get(name, 1.0) / max(denominators.get(name, 0.0), 1.0):.4g}"
                 for name, value in output.sums.items()]
        return ", ".join(parts)

    def _optimizer_step(self) -> float:
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.clip_grad_norm if self.cfg.clip_grad_norm is not None else math.inf
        grad_norm = scalar(torch.nn.utils.clip_grad_norm_(self.parameters, max_norm))
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _step_metrics(self, batches, real_tokens, sums, denominators, weights, grad_norm) -> dict[str, float]:
        # Loss sums are reduced across ranks only for logging; gradients were already synced by the wrapper.
        names = sorted(sums)
        reduced = self.dist.all_reduce_sum(torch.tensor([sums[n] for n in names], dtype=torch.float64)).tolist()
        metrics = {f"train/{name}": value / max(denominators.get(name, 0.0), 1.0)
                   for name, value in zip(names, reduced)}
        metrics["train/loss"] = sum(w * metrics.get(f"train/{n}", 0.0) for n, w in weights.items())
        sizes = torch.tensor(
            [sum(b.n_tokens for b in batches), real_tokens],
            dtype=torch.float64,
        )
        processed, real = self.dist.all_reduce_sum(sizes).tolist()
        self.state.tokens_processed += int(processed)
        self.state.tokens_seen += int(real)
        self.state.flops += 6.0 * self.n_forward_params * processed
        metrics["train/grad_norm"] = grad_norm
        metrics["train/lr"] = self.scheduler.get_last_lr()[0]
        metrics["train/step_tokens"] = processed
        return metrics

    # -------------------------------------------------------------------------------------------- the run ----
    def run(self, callbacks: LoopCallbacks, progress: Callable[[int, dict[str, float]], None] | None = None) -> None:
        window: list[dict[str, float]] = []
        window_start = time.perf_counter()
        while self.state.step < self.total_steps:
            step = self.state.step
            started = time.perf_counter()
            metrics = self.train_step(step)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            elapsed = time.perf_counter() - started
            self.state.train_seconds += elapsed
            self.state.step += 1
            metrics["train/step_seconds"] = elapsed
            window.append(metrics)
            if progress is not None:
                progress(self.state.step, metrics)
            if self.state.step % self.cfg.log_every == 0 or self.state.step == self.total_steps:
                callbacks.log(self._window_metrics(window, time.perf_counter() - window_start), self.state.step)
                window, window_start = [], time.perf_counter()
            if self.state.step in self.eval_steps or self.state.step == self.total_steps:
                if callbacks.evaluate is not None:
                    with self.dist.gathered():
                        evaluated = callbacks.evaluate(self.state.step)
                    callbacks.log(evaluated, self.state.step)
                if callbacks.checkpoint is not None:  # called on every rank: gathering sharded state is collective
                    callbacks.checkpoint(self.state.step)
                window_start = time.perf_counter()  # evaluation time is not training throughput

    def _window_metrics(self, window: list[dict[str, float]], seconds: float) -> dict[str, float]:
        keys = {k for m in window for k in m}
        out = {k: sum(m.get(k, 0.0) for m in window) / len(window) for k in keys if k != "train/step_tokens"}
        out["train/tokens_per_s"] = sum(m["train/step_tokens"] for m in window) / max(seconds, 1e-9)
        out["train/tokens_seen"] = float(self.state.tokens_seen)
        out["train/tokens_processed"] = float(self.state.tokens_processed)
        out["train/flops"] = self.state.flops
        out["train/seconds"] = self.state.train_seconds
        return out

    # ------------------------------------------------------------------------------------------ checkpoint ----
    def state_dict(self) -> dict:
        """The loop's state with whole optimizer tensors (the same format for every strategy). Every rank calls it;
        under FSDP only rank 0's holds the optimizer state."""
        return {
            "optimizer": whole_optimizer_state(self.optimizer.state_dict(), keep=self.dist.is_main),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "loop": vars(self.state).copy(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(local_optimizer_state(self.optimizer, state["optimizer"]))
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.state = LoopState(**state["loop"])
