"""One trial, top to bottom, in the order it runs: build (task, tokenizer, model, the method's preparation, data)
-> this rank's batches -> resume or start the record -> train, evaluating periodically (selection keeps the best
weights) -> the final scores of the last and the selected weights -> export.

The schedulers (in-process, Ray worker pool, Ray Train) all call :func:`run_trial`; nothing here knows a method by
name. It reports to a :class:`~mtp_bench.tracking.Tracker` when given one (rank 0 only under data parallelism).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtp_bench.data.pipeline import StepSampler, TrainingBatches
from mtp_bench.suite.config import TrialConfig
from mtp_bench.train.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint, trainable_state
from mtp_bench.train.loop import Distributed, LoopCallbacks, Trainer, TrainModule
from mtp_bench.trial.build import count_parameters, prepare
from mtp_bench.trial.evaluate import TrialEvaluation
from mtp_bench.trial.export import export
from mtp_bench.trial.record import Recorder

log = logging.getLogger(__name__)


@dataclass
class TrialOutcome:
    trial_id: str
    metrics: dict[str, float] = field(default_factory=dict)  # the final metrics (what compare reads)
    export_dir: Path | None = None


def run_trial(
    trial: TrialConfig,
    *,
    workdir: Path,
    tracker: Any = None,
    run_id: str | None = None,
    dist: Distributed | None = None,
    device: torch.device | None = None,
    wrap: Callable[[TrainModule], nn.Module] | None = None,
    progress: bool | None = None,
    on_metrics: Callable[[dict[str, float], int], None] | None = None,
) -> TrialOutcome:
    """Train and evaluate one trial. Resumes from ``workdir/checkpoint`` when one is there. ``on_metrics(metrics,
    step)`` sees whatever is logged (rank 0 only), for a scheduler's live view."""
    dist = dist or Distributed()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # build: task and splits, tokenizer, model, the method's preparation (and LoRA), the tokenized training set
    prepared = prepare(trial, device)
    if wrap is not None:
        dist.wrapped = wrap(prepared.module)
    record = Recorder(trial, tracker, run_id, dist.is_main, on_metrics)
    evaluation = TrialEvaluation(prepared, record, workdir)
    if dist.is_main and trial.evaluation.lm_eval.tasks:  # a bad lm-eval task fails now, not after training
        from mtp_bench.evaluation.lm_eval_bridge import preflight
        from mtp_bench.evaluation.lm_eval_local import lm_eval_fallback_dir

        preflight(trial.evaluation.lm_eval, lm_eval_fallback_dir(trial.data.task, trial.data.params))
    # data: this rank's micro-batches of every optimiser step
    sampler = StepSampler(len(prepared.train_data.items), batch_size=trial.train.batch_size,
                          grad_accum=trial.train.grad_accum, world_size=dist.world_size, rank=dist.rank,
                          seed=trial.seed)
    total = trial.train.max_steps or sampler.steps_for_epochs(trial.train.epochs or 1.0)
    batches = TrainingBatches(prepared.train_data, sampler, prepared.collator, prepared.condition_dropout)
    trainer = Trainer(prepared.module, prepared.method, trial.train, total_steps=total, device=prepared.device,
                      precision=prepared.precision, seed=trial.seed, batches_for_step=batches,
                      eval_steps=_eval_steps(trial, sampler, total), dist=dist)
    # the record: resumed where a checkpoint is, else started
    if has_checkpoint(workdir / "checkpoint"):
        state, meta = load_checkpoint(workdir / "checkpoint", prepared.module)
        trainer.load_state_dict(state)
        evaluation.selection.best = meta.get("best", evaluation.selection.best)
        record.resumed()
        log.info("trial %s resumes at step %d", trial.trial_id, trainer.state.step)
    else:
        record.started(prepared, count_parameters(prepared.module))
    record.log({"data/train_examples": len(prepared.train_data.items), "data/dropped_overlength":
                prepared.train_data.dropped, "data/truncated": prepared.train_data.truncated,
                "train/total_steps": trainer.total_steps}, 0)
    # train, evaluating periodically (selection keeps best.pt); checkpoints for resuming
    _train(trainer, trial, evaluation, record, workdir, dist,
           progress=(trial.train.progress if progress is None else progress) and dist.is_main)
    with dist.gathered():  # every rank: sharded weights are gathered whole for rank 0's evaluation and export
        if not dist.is_main:
            return TrialOutcome(trial.trial_id, {}, None)
        # select, and the final scores of the last and the selected weights
        final = evaluation.final(trainer.state.step)
        final.update({"train/seconds_total": trainer.state.train_seconds,
                      "train/tokens_seen_total": float(trainer.state.tokens_seen),
                      "train/tokens_processed_total": float(trainer.state.tokens_processed),
                      "train/flops_total": trainer.state.flops})
        record.log(final, trainer.state.step)
        return TrialOutcome(trial.trial_id, final, export(prepared, workdir / "export"))


def _eval_steps(trial: TrialConfig, sampler: StepSampler, total: int) -> set[int]:
    cfg = trial.evaluation
    if cfg.every_steps:
        every = cfg.every_steps
    elif cfg.every_epochs or trial.train.epochs:
        every = sampler.steps_for_epochs(cfg.every_epochs or 1.0)
    else:
        return {total}
    return set(range(every, total + 1, every)) | {total}


def _train(trainer: Trainer, trial: TrialConfig, evaluation: TrialEvaluation, record: Recorder, workdir: Path,
           dist: Distributed, progress: bool) -> None:
    def checkpoint(step: int) -> None:
        """Every rank takes part (sharded tensors are gathered whole); rank 0 writes."""
        if not trial.train.checkpoint:
            return
        trainable, state = trainable_state(trainer.module, keep=dist.is_main), trainer.state_dict()
        if dist.is_main:
            save_checkpoint(workdir / "checkpoint", trainable, state,
                            {"step": step, "best": evaluation.selection.best, "trial_id": trial.trial_id})

    # trainer.total_steps, not the step count asked for: a compute budget (train.max_positions / max_flops) may end
    # training sooner
    bar = _progress_bar(trainer.total_steps, trainer.state.step, trial.label) if progress else None
    callbacks = LoopCallbacks(log=record.log, evaluate=evaluation.periodic, checkpoint=checkpoint)
    try:
        trainer.run(callbacks, progress=(lambda step, m: _advance(bar, m)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(total: int, initial: int, label: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=label, unit="step", dynamic_ncols=True, leave=False)


def _advance(bar: Any, metrics: dict[str, float]) -> None:
    bar.update(1)
    bar.set_postfix(loss=f"{metrics.get('train/loss', float('nan')):.4f}", refresh=False)
