"""One trial, top to bottom: build the model -> let the method prepare it -> data -> the shared loop -> evaluation
-> export. It reports to a :class:`~mtp_bench.tracking.Tracker` when given one (rank 0 only under data parallelism).

The schedulers (in-process, Ray Tune, Ray Train) all call :func:`run_trial`; nothing here knows a method by name.
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

from mtp_bench import registry
from mtp_bench.api import MethodContext, SavesExtra, TokenBatch
from mtp_bench.data.pipeline import Splits, StepSampler, TokenizedSplit, build_splits, collate, tokenize
from mtp_bench.evaluation.api import EvalContext
from mtp_bench.evaluation.runner import build_scorers, held_out_loss, score_split, selection_metric
from mtp_bench.models.build import apply_lora, build_model, build_tokenizer, merged
from mtp_bench.suite.models import TrialConfig
from mtp_bench.train.checkpoint import has_checkpoint, load_checkpoint, load_trainable_state, save_checkpoint
from mtp_bench.train.checkpoint import trainable_state as current_trainable_state
from mtp_bench.train.loop import Distributed, LoopCallbacks, Trainer, TrainModule
from mtp_bench.train.optim import resolve_device, resolve_precision, seed_everything

log = logging.getLogger(__name__)


@dataclass
class TrialOutcome:
    trial_id: str
    metrics: dict[str, float] = field(default_factory=dict)  # the final metrics (what compare reads)
    export_dir: Path | None = None


@dataclass
class Prepared:
    """Everything a trial builds before training, kept together so tests and benchmarks can reuse it."""

    trial: TrialConfig
    method: Any
    tokenizer: Any
    module: TrainModule
    splits: Splits
    train_data: TokenizedSplit
    device: torch.device
    precision: torch.dtype | None


def build_task(trial: TrialConfig) -> Any:
    cls = registry.load_task(trial.data.task)
    return cls(cls.Params.model_validate(trial.data.params))


def build_method(trial: TrialConfig) -> Any:
    cls = registry.load_method(trial.method.name)
    context = MethodContext(train_mode=trial.train.mode, bidirectional_prompt=trial.bidirectional_prompt)
    return cls(cls.Params.model_validate(trial.method.params), context)


def prepare(trial: TrialConfig, device: torch.device | None = None) -> Prepared:
    """Build model, tokenizer, method and data for a trial (seeded)."""
    seed_everything(trial.seed, trial.train.deterministic)
    device = device or resolve_device(trial.train.device)
    task = build_task(trial)
    data = trial.data
    splits = build_splits(
        task,
        prompt_template=data.prompt_template,
        answer_template=data.answer_template,
        validation_size=data.validation_size,
        train_limit=data.train_limit,
        eval_limit=data.eval_limit,
    )
    tokenizer = build_tokenizer(trial.model, task.tokenizer_kind, lambda: [e.prompt + e.answer for e in splits.train])
    model = build_model(trial.model, tokenizer, from_scratch=trial.train.mode == "pretrain", seed=trial.seed)
    method = build_method(trial)
    extra = method.prepare(model, tokenizer)  # before LoRA: a method copies or extends the plain model
    if trial.train.mode == "lora":
        model = apply_lora(model, trial.train.lora)
    module = TrainModule(model, extra, method).to(device)
    train_data = tokenize(splits.train, tokenizer, max_length=trial.train.max_length, overlength=trial.train.overlength)
    precision = resolve_precision(trial.train.precision, device)
    return Prepared(trial, method, tokenizer, module, splits, train_data, device, precision)


def _batches(items: list, tokenizer: Any, size: int, trial: TrialConfig) -> list[TokenBatch]:
    pretrain = trial.train.mode == "pretrain"
    return [
        collate(items[i : i + size], tokenizer.pad_token_id, loss_on_prompt=pretrain,
                bidirectional_prompt=trial.bidirectional_prompt)
        for i in range(0, len(items), size)
    ]


def _eval_steps(trial: TrialConfig, sampler: StepSampler, total: int) -> set[int]:
    cfg = trial.evaluation
    if cfg.every_steps:
        every = cfg.every_steps
    elif cfg.every_epochs or trial.train.epochs:
        every = sampler.steps_for_epochs(cfg.every_epochs or 1.0)
    else:
        return {total}
    return set(range(every, total + 1, every)) | {total}


class TrialRunner:
    """Holds the state of one running trial; :func:`run_trial` is the entry point."""

    def __init__(self, prepared: Prepared, *, tracker: Any, run_id: str | None, workdir: Path, dist: Distributed,
                 progress: bool):
        self.p, self.tracker, self.run_id, self.workdir, self.dist = prepared, tracker, run_id, workdir, dist
        trial = prepared.trial
        self.scorers = build_scorers(trial.evaluation)
        self.select_name, self.higher_is_better = selection_metric(trial.evaluation, self.scorers)
        self.periodic_split = "val" if prepared.splits.validation else "test"
        self.best: dict[str, Any] = {"value": None, "step": None}
        self.final_metrics: dict[str, float] = {}
        self.progress = progress and dist.is_main
        self.on_metrics: Callable[[dict[str, float], int], None] | None = None  # e.g. a scheduler's live view
        self.last_eval_step: int | None = None  # set by periodic_evaluation

    # --------------------------------------------------------------------------------------- reporting ----
    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.tracker is not None and self.dist.is_main:
            self.tracker.log_metrics(self.run_id, metrics, step)
        if self.on_metrics is not None and self.dist.is_main:
            self.on_metrics(metrics, step)

    def log_samples(self, samples: dict[str, list[dict[str, Any]]], split: str, tag: str = "") -> None:
        if self.tracker is None or not self.dist.is_main or not self.p.trial.tracking.log_artifacts:
            return
        for scorer, rows in samples.items():
            self.tracker.log_jsonl(self.run_id, rows, f"predictions/{tag}{split}_{scorer}.jsonl")

    # -------------------------------------------------------------------------------------- evaluation ----
    def eval_context(self, model: nn.Module) -> EvalContext:
        trial = self.p.trial
        return EvalContext(
            model=model,
            tokenizer=self.p.tokenizer,
            method=self.p.method,
            extra=self.p.module.extra,
            train_model=self.p.module.model,
            batch_size=trial.evaluation.batch_size,
            max_new_tokens=trial.evaluation.max_new_tokens,
            bidirectional_prompt=trial.bidirectional_prompt,
            autocast_dtype=self.p.precision,
        )

    def evaluate_split(self, split: str, step: int | None = None) -> tuple[dict[str, float], dict[str, list]]:
        """Held-out loss terms and scorer metrics of the current weights on ``val`` or ``test``."""
        p, trial = self.p, self.p.trial
        examples = p.splits.validation if split == "val" else p.splits.test
        metrics: dict[str, float] = {}
        if trial.evaluation.held_out_loss and examples:
            items = tokenize(examples, p.tokenizer, max_length=trial.train.max_length, overlength="truncate").items
            batches = _batches(items, p.tokenizer, trial.train.batch_size, trial)
            losses = held_out_loss(p.module, p.method, batches, p.device, p.precision)
            metrics.update({f"{split}/{name}": value for name, value in losses.items()})
        exported = p.method.export(p.module.model, p.module.extra)
        # scorers that are costly and say so (``periodic = False``, e.g. speculative decoding) run only at the end
        scorers = self.scorers if step is None else [s for s in self.scorers if getattr(s, "periodic", True)]
        result = score_split(self.eval_context(exported), scorers, examples, split)
        metrics.update(result.metrics)
        return metrics, result.samples

    def periodic_evaluation(self, step: int) -> dict[str, float]:
        """Score the periodic splits; keep ``best.pt`` when the selection metric improves (see
        :func:`~mtp_bench.evaluation.runner.plan_selection`)."""
        from mtp_bench.evaluation.runner import improves, plan_selection, save_best, selection_value

        if not self.dist.is_main:  # scorers run on rank 0 only; other ranks wait at the next collective
            return {}
        self.last_eval_step = step
        plan = plan_selection(self.p.trial.evaluation, self.select_name, self.higher_is_better,
                              bool(self.p.splits.validation))
        metrics: dict[str, float] = {}
        for split in plan.periodic_splits:
            split_metrics, samples = self.evaluate_split(split, step)
            metrics.update(split_metrics)
            self.log_samples(samples, split, tag=f"step{step}/")
        if plan.split is not None:
            value = selection_value(plan, metrics)
            if improves(value, self.best["value"], plan.higher_is_better):
                save_best(self.workdir / "best.pt", current_trainable_state(self.p.module), step, value)
                self.best = {"value": value, "step": step}
        return metrics

    def checkpoint(self, step: int, trainer: Trainer) -> None:
        """Every rank takes part (sharded tensors are gathered whole); rank 0 writes."""
        if not self.p.trial.train.checkpoint:
            return
        trainable, state = current_trainable_state(self.p.module, keep=self.dist.is_main), trainer.state_dict()
        if self.dist.is_main:
            save_checkpoint(self.workdir / "checkpoint", trainable, state,
                            {"step": step, "best": self.best, "trial_id": self.p.trial.trial_id})

    def final_evaluation(self, step: int | None = None) -> dict[str, float]:
        """Test metrics and lm-eval of the last weights (``last/``) and of the selected checkpoint (``best/`` or
        ``best_on_test/``, with ``<prefix>/step``); a selected checkpoint that is the last one is not scored twice.
        Tags name the selection; whatever was measured is logged before an lm-eval failure propagates."""
        from mtp_bench.evaluation import runner as ev
        from mtp_bench.evaluation.lm_eval_bridge import run_lm_eval

        trial, cfg = self.p.trial, self.p.trial.evaluation
        plan = ev.plan_selection(cfg, self.select_name, self.higher_is_better, bool(self.p.splits.validation))
        step = step if step is not None else self.last_eval_step
        chosen = ev.load_selected(plan, self.workdir / "best.pt", self.best)
        if plan.note and cfg.select_on != "last":
            log.warning("trial %s: no checkpoint selection (%s); reporting the last checkpoint", trial.label, plan.note)
        if self.tracker is not None and self.dist.is_main:
            self.tracker.set_tags(self.run_id, {
                "mtp_bench.select_on": cfg.select_on, "mtp_bench.select_metric": plan.metric,
                "mtp_bench.periodic_split": plan.periodic_splits[0],
                "mtp_bench.selection": plan.label if chosen else f"last checkpoint ({plan.note or 'none saved'})"})
        lm_targets = ev.lm_eval_targets(cfg, chosen.prefix if chosen else None)
        final: dict[str, float] = {}

        def score(tags: list[str], with_lm_eval: bool) -> None:
            """Score the current weights once and record the results under every prefix in ``tags``."""
            metrics: dict[str, float] = {}
            artifacts: dict[str, list[dict[str, Any]]] = {}
            if cfg.test_split and self.p.splits.test:
                test_metrics, samples = self.evaluate_split("test")
                metrics.update(test_metrics)
                artifacts.update({f"test_{scorer}.jsonl": rows for scorer, rows in samples.items()})
            if with_lm_eval:
                result = run_lm_eval(self.p.method.export(self.p.module.model, self.p.module.extra),
                                     self.p.tokenizer, cfg.lm_eval, precision=self.p.precision,
                                     data_dir=ev.lm_eval_fallback_dir(trial.data.task, trial.data.params),
                                     log_samples=trial.tracking.log_artifacts,
                                     bidirectional_prompt=trial.bidirectional_prompt)
                metrics.update(result.metrics)
                artifacts.update({f"lm_eval/{task}.jsonl": rows for task, rows in result.samples.items()})
                if self.tracker is not None:
                    self.tracker.log_params(self.run_id, result.params)
            for tag in tags:
                final.update({f"{tag}/{name}": value for name, value in metrics.items()})
                if self.tracker is not None and trial.tracking.log_artifacts:
                    for path, rows in artifacts.items():
                        self.tracker.log_jsonl(self.run_id, rows, f"predictions/{tag}/{path}")

        try:
            same = chosen is not None and chosen.step == step
            tags = ["last", chosen.prefix] if same else ["last"]
            score(tags, bool(lm_targets.intersection(tags)))
            if chosen is not None and not same:
                last_state = current_trainable_state(self.p.module)
                load_trainable_state(self.p.module, chosen.state)
                try:
                    score([chosen.prefix], chosen.prefix in lm_targets)
                finally:
                    load_trainable_state(self.p.module, last_state)
        except BaseException:
            self.log(final, step or 0)  # keep what was measured; the trial still fails with the error
            raise
        if chosen is not None:
            final[f"{chosen.prefix}/step"] = float(chosen.step)
            final.setdefault(f"{chosen.prefix}/{plan.split}/{plan.metric}", chosen.value)  # the value it won with
        return final

    def export(self) -> Path:
        directory = self.workdir / "export"
        model = self.p.method.export(merged(self.p.module.model), self.p.module.extra)
        model.save_pretrained(directory)
        self.p.tokenizer.save_pretrained(directory)
        extra = self.p.module.extra
        if extra is not None:
            if isinstance(self.p.method, SavesExtra):
                self.p.method.save_extra(extra, directory / "extra")
            else:
                from safetensors.torch import save_file

                state = {k: v.detach().cpu().contiguous() for k, v in extra.state_dict().items()}
                save_file(state, str(directory / "extra.safetensors"))
        return directory


def count_parameters(module: TrainModule) -> dict[str, float]:
    extra = sum(p.numel() for p in module.extra.parameters()) if module.extra is not None else 0
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {"params/total": float(total), "params/extra": float(extra), "params/trainable": float(trainable),
            "params/base": float(total - extra)}


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
        pretrain = trial.train.mode == "pretrain"
        return [
            collate([items[i] for i in indices], prepared.tokenizer.pad_token_id, loss_on_prompt=pretrain,
                    bidirectional_prompt=trial.bidirectional_prompt)
            for indices in sampler.micro_batches(step)
        ]

    trainer = Trainer(prepared.module, prepared.method, trial.train, total_steps=total, device=prepared.device,
                      precision=prepared.precision, seed=trial.seed, batches_for_step=batches_for_step,
                      eval_steps=_eval_steps(trial, sampler, total), dist=dist)
    if has_checkpoint(workdir / "checkpoint"):
        state, meta = load_checkpoint(workdir / "checkpoint", prepared.module)
        trainer.load_state_dict(state)
        runner.best = meta.get("best", runner.best)
        log.info("trial %s resumes at step %d", trial.trial_id, trainer.state.step)
    elif runner.tracker is not None and dist.is_main:
        runner.tracker.log_params(run_id, _params(trial, prepared))
        runner.log(count_parameters(prepared.module), 0)
        if trial.tracking.log_artifacts:
            runner.tracker.log_text(run_id, yaml.safe_dump(trial.model_dump(mode="json"), sort_keys=False),
                                    "trial.yaml")
    runner.log({"data/train_examples": len(items), "data/dropped_overlength": prepared.train_data.dropped,
                "data/truncated": prepared.train_data.truncated, "train/total_steps": total}, 0)

    bar = _progress_bar(total, trainer.state.step, trial.label) if runner.progress else None
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
