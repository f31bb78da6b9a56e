"""A running trial's evaluation: its scorers (built once) and checkpoint selection (planned once,
:mod:`.selection`); held-out loss and scorer metrics of the current weights on a split; the periodic evaluation
during training; and the final scores of the last and the selected weights, lm-eval included."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from mtp_bench.api.scorer import is_periodic
from mtp_bench.data.pipeline import tokenize
from mtp_bench.evaluation.context import ScoringContext
from mtp_bench.evaluation.scoring import SplitResult, build_scorers, held_out_loss, score_split
from mtp_bench.tracking import tags as T
from mtp_bench.train.checkpoint import load_trainable_state, trainable_state
from mtp_bench.trial.build import Prepared
from mtp_bench.trial.record import Recorder
from mtp_bench.trial.selection import Selection, lm_eval_targets

log = logging.getLogger(__name__)


class TrialEvaluation:
    """Evaluation of one trial's weights as they train (``periodic``) and once trained (``final``)."""

    def __init__(self, prepared: Prepared, record: Recorder, workdir: Path):
        self.p, self.record = prepared, record
        self.scorers = build_scorers(prepared.trial.evaluation)
        self.selection = Selection(prepared.trial.evaluation, self.scorers, bool(prepared.splits.validation),
                                   workdir / "best.pt")
        self.last_eval_step: int | None = None  # set by periodic
        self._held_out: dict[str, list] = {}  # split -> its tokenized examples (tokenized once, at the first eval)

    def context(self, model: nn.Module) -> ScoringContext:
        """What the scorers get: the exported ``model`` and the trial's task, method, tokenizer and settings."""
        p, trial = self.p, self.p.trial
        return ScoringContext(
            model=model,
            tokenizer=p.tokenizer,
            task=p.task,
            method=p.method,
            extra=p.module.extra,
            train_model=p.module.model,
            batch_size=trial.evaluation.batch_size,
            max_new_tokens=trial.evaluation.max_new_tokens,
            bidirectional_prompt=trial.bidirectional_prompt,
            autocast_dtype=p.precision,
            run_label=trial.label,
        )

    def split(self, split: str, step: int | None = None) -> SplitResult:
        """Held-out loss terms and scorer metrics of the current weights on ``val`` or ``test``, with each scorer's
        per-sample rows and extra files. Periodic evaluations (``step`` given) leave out costly scorers that say so
        (``periodic = False``, e.g. speculative decoding)."""
        p, trial = self.p, self.p.trial
        examples = p.splits.validation if split == "val" else p.splits.test
        metrics: dict[str, float] = {}
        if trial.evaluation.held_out_loss and examples:
            if split not in self._held_out:
                self._held_out[split] = tokenize(examples, p.tokenizer, max_length=trial.train.max_length,
                                                 overlength="truncate").items
            batches = p.collator.batches(self._held_out[split], trial.train.batch_size)
            losses = held_out_loss(p.module, p.method, batches, p.device, p.precision)
            metrics.update({f"{split}/{name}": value for name, value in losses.items()})
        exported = p.method.export(p.module.model, p.module.extra)
        scorers = self.scorers if step is None else [s for s in self.scorers if is_periodic(s)]
        result = score_split(self.context(exported), scorers, examples, split)
        metrics.update(result.metrics)
        return SplitResult(metrics, result.samples, result.files)

    def periodic(self, step: int) -> dict[str, float]:
        """Score the periodic splits and let selection keep the weights when its metric improves. Scorers run on
        rank 0 only; the other ranks wait at the next collective."""
        if not self.record.is_main:
            return {}
        self.last_eval_step = step
        metrics: dict[str, float] = {}
        for split in self.selection.plan.periodic_splits:
            scores = self.split(split, step)
            metrics.update(scores.metrics)
            self.record.samples(scores.samples, split, tag=f"step{step}/", files=scores.files)
        self.selection.offer(step, metrics, lambda: trainable_state(self.p.module))
        return metrics

    def final(self, step: int | None = None) -> dict[str, float]:
        """Test metrics and lm-eval of the last weights (``last/``) and of the selected checkpoint (``best/`` or
        ``best_on_test/``, with ``<prefix>/step``); a selected checkpoint that is the last one is not scored twice.
        Tags name the selection; whatever was measured is logged before an lm-eval failure propagates."""
        trial, cfg, plan = self.p.trial, self.p.trial.evaluation, self.selection.plan
        step = step if step is not None else self.last_eval_step
        chosen = self.selection.selected()
        if plan.note and cfg.select_on != "last":
            log.warning("trial %s: no checkpoint selection (%s); reporting the last checkpoint", trial.label, plan.note)
        self.record.tags({
            T.TAG_SELECT_ON: cfg.select_on, T.TAG_SELECT_METRIC: plan.metric,
            T.TAG_PERIODIC_SPLIT: plan.periodic_splits[0],
            T.TAG_SELECTION: plan.label if chosen else f"last checkpoint ({plan.note or 'none saved'})"})
        lm_targets = lm_eval_targets(cfg, chosen.prefix if chosen else None)
        final: dict[str, float] = {}
        try:
            same = chosen is not None and chosen.step == step
            tags = ["last", chosen.prefix] if same else ["last"]
            final.update(self._scores(tags, bool(lm_targets.intersection(tags))))
            if chosen is not None and not same:
                last_state = trainable_state(self.p.module)
                load_trainable_state(self.p.module, chosen.state)
                try:
                    final.update(self._scores([chosen.prefix], chosen.prefix in lm_targets))
                finally:
                    load_trainable_state(self.p.module, last_state)
        except BaseException:
            self.record.log(final, step or 0)  # keep what was measured; the trial still fails with the error
            raise
        if chosen is not None:
            final[f"{chosen.prefix}/step"] = float(chosen.step)
            final.setdefault(f"{chosen.prefix}/{plan.split}/{plan.metric}", chosen.value)  # the value it won with
        return final

    def _scores(self, tags: list[str], with_lm_eval: bool) -> dict[str, float]:
        """Score the current weights once (test split, and lm-eval when asked) and return the results under every
        prefix in ``tags``, their rows and files recorded under each."""
        from mtp_bench.evaluation.lm_eval_bridge import run_lm_eval
        from mtp_bench.evaluation.lm_eval_local import lm_eval_fallback_dir

        p, trial, cfg = self.p, self.p.trial, self.p.trial.evaluation
        metrics: dict[str, float] = {}
        rows: dict[str, list[dict[str, Any]]] = {}
        files: dict[str, dict[str, bytes]] = {}
        if cfg.test_split and p.splits.test:
            scores = self.split("test")
            metrics.update(scores.metrics)
            files = scores.files
            rows.update({f"test_{scorer}.jsonl": samples for scorer, samples in scores.samples.items()})
        if with_lm_eval:
            result = run_lm_eval(p.method.export(p.module.model, p.module.extra), p.tokenizer, cfg.lm_eval,
                                 precision=p.precision, data_dir=lm_eval_fallback_dir(trial.data.task, trial.data.params),
                                 log_samples=trial.tracking.log_artifacts, bidirectional_prompt=trial.bidirectional_prompt)
            metrics.update(result.metrics)
            rows.update({f"lm_eval/{task}.jsonl": samples for task, samples in result.samples.items()})
            self.record.params(result.params)
        for tag in tags:
            for path, samples in rows.items():
                self.record.rows(samples, f"predictions/{tag}/{path}")
            if self.record.artifacts:
                for scorer, named in files.items():
                    self.record.files(named, f"predictions/{tag}/test_{scorer}")
        return {f"{tag}/{name}": value for tag in tags for name, value in metrics.items()}
