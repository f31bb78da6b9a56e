"""The first step of a trial, seeded: task and data splits, tokenizer, model, the method's preparation of it (and
LoRA), the tokenized training set (:func:`prepare`); and how its examples are collated into batches (one
:class:`~mtp_bench.data.pipeline.Collator`, for training and held-out evaluation alike)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from mtp_bench import registry
from mtp_bench.api.batches import TokenBatch
from mtp_bench.api.method import MethodContext
from mtp_bench.api.task import DropsCondition, HasVocabulary
from mtp_bench.data.pipeline import (
    Collator,
    ConditionDropout,
    Splits,
    TokenizedSplit,
    build_splits,
    encode_prompt,
    tokenize,
)
from mtp_bench.models.build import apply_lora, build_model, build_tokenizer
from mtp_bench.models.device import cast_weights, resolve_device, resolve_precision, seed_everything
from mtp_bench.suite.config import TrialConfig
from mtp_bench.train.loop import TrainModule


@dataclass
class Prepared:
    """Everything a trial builds before training, kept together so tests and benchmarks can reuse it."""

    trial: TrialConfig
    task: Any
    method: Any
    tokenizer: Any
    module: TrainModule
    splits: Splits
    train_data: TokenizedSplit
    device: torch.device
    precision: torch.dtype | None
    condition_dropout: ConditionDropout | None = None  # class-label dropout of an image task (guidance training)

    @cached_property
    def collator(self) -> Collator:
        return collator(self.trial, self.tokenizer)


def build_task(trial: TrialConfig) -> Any:
    return registry.build(registry.TASKS, trial.data.task, trial.data.params)


def build_method(trial: TrialConfig) -> Any:
    context = MethodContext(train_mode=trial.train.mode, bidirectional_prompt=trial.bidirectional_prompt)
    return registry.build(registry.METHODS, trial.method.name, trial.method.params, context)


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
    # a task that knows its words (image codes) spares the scan
    texts = (lambda: [" ".join(task.vocabulary())]) if isinstance(task, HasVocabulary) else (
        lambda: [e.prompt + e.answer for e in splits.train])
    tokenizer = build_tokenizer(trial.model, task.tokenizer_kind, texts)
    model = build_model(trial.model, tokenizer, from_scratch=trial.train.mode == "pretrain", seed=trial.seed)
    method = build_method(trial)
    extra = method.prepare(model, tokenizer)  # before LoRA: a method copies or extends the plain model
    if trial.train.mode == "lora":
        model = apply_lora(model, trial.train.lora)
    module = cast_weights(TrainModule(model, extra, method).to(device), trial.train.precision)
    train_data = tokenize(splits.train, tokenizer, max_length=trial.train.max_length, overlength=trial.train.overlength)
    precision = resolve_precision(trial.train.precision, device)
    dropout = task.condition_dropout() if isinstance(task, DropsCondition) else None
    condition_dropout = None if dropout is None else ConditionDropout(
        encode_prompt(tokenizer, dropout[0]), dropout[1], trial.seed)
    return Prepared(trial, task, method, tokenizer, module, splits, train_data, device, precision, condition_dropout)


def preload(trial: TrialConfig) -> None:
    """Import what building and evaluating ``trial`` will import (its method, task and scorers, the model's
    transformers classes, the evaluation code), so that a worker process that runs many trials pays for the imports
    once, before the first trial's timer starts. Best effort: anything missing fails later, inside the trial."""
    import importlib

    import mtp_bench.evaluation.scoring  # noqa: F401

    for group, name in [(registry.METHODS, trial.method.name), (registry.TASKS, trial.data.task),
                        *((registry.SCORERS, s.name) for s in trial.evaluation.scorers)]:
        try:
            registry.load(group, name)
        except Exception:  # noqa: BLE001, S112 - reported by the trial itself
            continue
    if trial.model.preset is not None:
        from mtp_bench.suite.presets import PRESETS

        model_type = PRESETS.get(trial.model.preset, (None,))[0]
        if model_type:
            for module in (f"transformers.models.{model_type}.configuration_{model_type}",
                           f"transformers.models.{model_type}.modeling_{model_type}"):
                try:
                    importlib.import_module(module)
                except ImportError:
                    break


def collator(trial: TrialConfig, tokenizer: Any) -> Collator:
    """How the trial's examples become batches: the loss on the prompt too when pretraining, the prompt
    bidirectional when the suite asks for it."""
    return Collator(tokenizer.pad_token_id, loss_on_prompt=trial.train.mode == "pretrain",
                    bidirectional_prompt=trial.bidirectional_prompt)


def collate_items(trial: TrialConfig, tokenizer: Any, items: list) -> TokenBatch:
    """One batch of tokenized examples as the trial trains on them (for tools that measure steps outside a
    trial)."""
    return collator(trial, tokenizer)(items)


def count_parameters(module: TrainModule) -> dict[str, float]:
    extra = sum(p.numel() for p in module.extra.parameters()) if module.extra is not None else 0
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {"params/total": float(total), "params/extra": float(extra), "params/trainable": float(trainable),
            "params/base": float(total - extra)}
