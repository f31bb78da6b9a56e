"""A running trial's reporting and evaluation: metrics to the tracker (each step once, also after a resume),
periodic evaluation and checkpoint selection, checkpoints, the final evaluation of the last and the selected
weights, and the export."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from mtp_bench.api.method import SavesExtra
from mtp_bench.data.pipeline import tokenize
from mtp_bench.evaluation.context import ScoringContext
from mtp_bench.evaluation.runner import build_scorers, held_out_loss, score_split, selection_metric
from mtp_bench.models.build import merged
from mtp_bench.tracking import metric_name
from mtp_bench.tracking import tags as T
from mtp_bench.train.checkpoint import load_trainable_state, save_checkpoint
from mtp_bench.train.checkpoint import trainable_state as current_trainable_state
from mtp_bench.train.loop import Distributed, Trainer
from mtp_bench.trial.prepare import Prepared, collate_items

log = logging.getLogger(__name__)


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
        self.logged: dict[str, set[int]] = {}  # metric -> steps the run already holds (a resumed run's)

    # --------------------------------------------------------------------------------------- reporting ----
    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.logged:  # a resumed run: the killed process may have logged past its last checkpoint
            metrics = {k: v for k, v in metrics.items() if step not in self.logged.get(metric_name(k), ())}
        if self.tracker is not None and self.dist.is_main and metrics:
            self.tracker.log_metrics(self.run_id, metrics, step)
        if self.on_metrics is not None and self.dist.is_main:
            self.on_metrics(metrics, step)

    def log_samples(self, samples: dict[str, list[dict[str, Any]]], split: str, tag: str = "",
                    files: dict[str, dict[str, bytes]] | None = None) -> None:
        if self.tracker is None or not self.dist.is_main or not self.p.trial.tracking.log_artifacts:
            return
        for scorer, rows in samples.items():
            self.tracker.log_jsonl(self.run_id, rows, f"predictions/{tag}{split}_{scorer}.jsonl")
        for scorer, named in (files or {}).items():
            self.log_files(named, f"predictions/{tag}{split}_{scorer}")

    def log_files(self, files: dict[str, bytes], artifact_dir: str) -> None:
        """A scorer's extra artifacts (bytes by file name) into ``artifact_dir`` of the run."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="mtp-bench-artifacts-") as folder:
            for name, data in files.items():
                path = Path(folder) / name
                path.write_bytes(data)
                self.tracker.log_file(self.run_id, path, artifact_dir)

    # -------------------------------------------------------------------------------------- evaluation ----
    def eval_context(self, model: nn.Module) -> ScoringContext:
        trial = self.p.trial
        return ScoringContext(
            model=model,
            tokenizer=self.p.tokenizer,
            task=self.p.task,
            method=self.p.method,
            extra=self.p.module.extra,
            train_model=self.p.module.model,
            batch_size=trial.evaluation.batch_size,
            max_new_tokens=trial.evaluation.max_new_tokens,
            bidirectional_prompt=trial.bidirectional_prompt,
            autocast_dtype=self.p.precision,
            run_label=trial.label,
        )

    def evaluate_split(self, split: str, step: int | None = None) -> tuple[dict[str, float], dict[str, list],
                                                                          dict[str, dict[str, bytes]]]:
        """Held-out loss terms and scorer metrics of the current weights on ``val`` or ``test``, the per-sample rows
        and extra artifact files of each scorer."""
        p, trial = self.p, self.p.trial
        examples = p.splits.validation if split == "val" else p.splits.test
        metrics: dict[str, float] = {}
        if trial.evaluation.held_out_loss and examples:
            items = tokenize(examples, p.tokenizer, max_length=trial.train.max_length, overlength="truncate").items
            size = trial.train.batch_size
            batches = [collate_items(trial, p.tokenizer, items[i : i + size]) for i in range(0, len(items), size)]
            losses = held_out_loss(p.module, p.method, batches, p.device, p.precision)
            metrics.update({f"{split}/{name}": value for name, value in losses.items()})
        exported = p.method.export(p.module.model, p.module.extra)
        # scorers that are costly and say so (``periodic = False``, e.g. speculative decoding) run only at the end
        scorers = self.scorers if step is None else [s for s in self.scorers if getattr(s, "periodic", True)]
        result = score_split(self.eval_context(exported), scorers, examples, split)
        metrics.update(result.metrics)
        return metrics, result.samples, result.files

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
            split_metrics, samples, files = self.evaluate_split(split, step)
            metrics.update(split_metrics)
            self.log_samples(samples, split, tag=f"step{step}/", files=files)
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
                T.TAG_SELECT_ON: cfg.select_on, T.TAG_SELECT_METRIC: plan.metric,
                T.TAG_PERIODIC_SPLIT: plan.periodic_splits[0],
                T.TAG_SELECTION: plan.label if chosen else f"last checkpoint ({plan.note or 'none saved'})"})
        lm_targets = ev.lm_eval_targets(cfg, chosen.prefix if chosen else None)
        final: dict[str, float] = {}

        def score(tags: list[str], with_lm_eval: bool) -> None:
            """Score the current weights once and record the results under every prefix in ``tags``."""
            metrics: dict[str, float] = {}
            artifacts: dict[str, list[dict[str, Any]]] = {}
            files: dict[str, dict[str, bytes]] = {}
            if cfg.test_split and self.p.splits.test:
                test_metrics, samples, files = self.evaluate_split("test")
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
                    for scorer, named in files.items():
                        self.log_files(named, f"predictions/{tag}/test_{scorer}")

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
