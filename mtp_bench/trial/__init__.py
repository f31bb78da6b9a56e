"""One trial, top to bottom: build the model -> let the method prepare it -> data -> the shared loop -> evaluation
-> export. It reports to a :class:`~mtp_bench.tracking.Tracker` when given one (rank 0 only under data parallelism).

The schedulers (in-process, Ray worker pool, Ray Train) all call :func:`run_trial`; nothing here knows a method by name.
What a trial builds is in :mod:`.prepare`; how a running trial reports and evaluates, in :mod:`.runner`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from mtp_bench.api.batches import TokenBatch
from mtp_bench.data.pipeline import StepSampler
from mtp_bench.suite.config import TrialConfig
from mtp_bench.train.checkpoint import has_checkpoint, load_checkpoint
from mtp_bench.train.loop import Distributed, LoopCallbacks, Trainer, TrainModule
from mtp_bench.trial.prepare import Prepared, build_method, build_task, collate_items, count_parameters, prepare
from mtp_bench.trial.runner import TrialRunner

__all__ = ["Prepared", "TrialOutcome", "TrialRunner", "build_method", "build_task", "collate_items",
           "count_parameters", "prepare", "run_trial"]

log = logging.getLogger(__name__)


@dataclass
class TrialOutcome:
    trial_id: str
    metrics: dict[str, float] = field(default_factory=dict)  # the final metrics (what compare reads)
    export_dir: Path | None = None


def _eval_steps(trial: TrialConfig, sampler: StepSampler, total: int) -> set[int]:
    cfg = trial.evaluation
    if cfg.every_steps:
        every = cfg.every_steps
    elif cfg.every_epochs or trial.train.epochs:
        every = sampler.steps_for_epochs(cfg.every_epochs or 1.0)
    else:
        return {total}
    return set(range(every, total + 1, every)) | {total}


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
    prepared = prepare(trial, device)
    if wrap is not None:
        dist.wrapped = wrap(prepared.module)
    runner = TrialRunner(prepared, tracker=tracker, run_id=run_id, workdir=workdir, dist=dist,
                         progress=trial.train.progress if progress is None else progress)
    runner.on_metrics = on_metrics
    if dist.is_main and trial.evaluation.lm_eval.tasks:  # a bad lm-eval task fails now, not after training
        from mtp_bench.evaluation.lm_eval_bridge import preflight
        from mtp_bench.evaluation.runner import lm_eval_fallback_dir

        preflight(trial.evaluation.lm_eval, lm_eval_fallback_dir(trial.data.task, trial.data.params))
    sampler = StepSampler(len(prepared.train_data.items), batch_size=trial.train.batch_size,
                          grad_accum=trial.train.grad_accum, world_size=dist.world_size, rank=dist.rank,
                          seed=trial.seed)
    total = trial.train.max_steps or sampler.steps_for_epochs(trial.train.epochs or 1.0)
    items = prepared.train_data.items

    def batches_for_step(step: int) -> list[TokenBatch]:
        return [collate_items(trial, prepared.tokenizer, prepared.step_items(step, indices))
                for indices in sampler.micro_batches(step)]

    trainer = Trainer(prepared.module, prepared.method, trial.train, total_steps=total, device=prepared.device,
                      precision=prepared.precision, seed=trial.seed, batches_for_step=batches_for_step,
                      eval_steps=_eval_steps(trial, sampler, total), dist=dist)
    if has_checkpoint(workdir / "checkpoint"):
        state, meta = load_checkpoint(workdir / "checkpoint", prepared.module)
        trainer.load_state_dict(state)
        runner.best = meta.get("best", runner.best)
        if runner.tracker is not None and dist.is_main:  # never log a step twice: skip what the run already holds
            runner.logged = runner.tracker.logged_steps(run_id)
        log.info("trial %s resumes at step %d", trial.trial_id, trainer.state.step)
    elif runner.tracker is not None and dist.is_main:
        runner.tracker.log_params(run_id, _params(trial, prepared))
        runner.log(count_parameters(prepared.module), 0)
        if trial.tracking.log_artifacts:
            runner.tracker.log_text(run_id, yaml.safe_dump(trial.model_dump(mode="json"), sort_keys=False),
                                    "trial.yaml")
    runner.log({"data/train_examples": len(items), "data/dropped_overlength": prepared.train_data.dropped,
                "data/truncated": prepared.train_data.truncated, "train/total_steps": trainer.total_steps}, 0)

    # trainer.total_steps, not total: a compute budget (train.max_positions / max_flops) may end training sooner
    bar = _progress_bar(trainer.total_steps, trainer.state.step, trial.label) if runner.progress else None
    callbacks = LoopCallbacks(log=runner.log, evaluate=runner.periodic_evaluation,
                              checkpoint=lambda step: runner.checkpoint(step, trainer))
    try:
        trainer.run(callbacks, progress=(lambda step, m: _advance(bar, m)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    with dist.gathered():  # every rank: sharded weights are gathered whole for rank 0's evaluation and export
        if not dist.is_main:
            return TrialOutcome(trial.trial_id, {}, None)
        final = runner.final_evaluation(trainer.state.step)
        final.update({"train/seconds_total": trainer.state.train_seconds,
                      "train/tokens_seen_total": float(trainer.state.tokens_seen),
                      "train/tokens_processed_total": float(trainer.state.tokens_processed),
                      "train/flops_total": trainer.state.flops})
        runner.log(final, trainer.state.step)
        return TrialOutcome(trial.trial_id, final, runner.export())


def _params(trial: TrialConfig, prepared: Prepared) -> dict[str, str]:
    from mtp_bench.tracking import flatten

    params = flatten(trial.model_dump(mode="json", exclude={"tracking", "description"}))
    params["trial_id"] = trial.trial_id
    params["device"] = str(prepared.device)
    params["precision"] = str(prepared.precision or "fp32")
    return params


def _progress_bar(total: int, initial: int, label: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=label, unit="step", dynamic_ncols=True, leave=False)


def _advance(bar: Any, metrics: dict[str, float]) -> None:
    bar.update(1)
    bar.set_postfix(loss=f"{metrics.get('train/loss', float('nan')):.4f}", refresh=False)
