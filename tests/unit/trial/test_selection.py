"""Checkpoint selection: the best validation step is not the last, so ``best/`` and ``last/`` differ; selection on
the test split only when the suite asks, under ``best_on_test/``. The trial's own evaluation and weights are used; a
scripted scorer makes the validation curve peak at a chosen step and reads a fingerprint of the weights on test, so
that each reported number shows which weights were scored."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import torch
from pydantic import BaseModel

from helpers import make_suite
from mtp_bench.api.scorer import ScoreResult
from mtp_bench.errors import SelectionError
from mtp_bench.suite import expand_grid
from mtp_bench.suite.load import validate_suite
from mtp_bench.trial import prepare
from mtp_bench.trial.evaluate import TrialEvaluation
from mtp_bench.trial.record import Recorder
from mtp_bench.trial.selection import improves


class NoParams(BaseModel):
    pass


def fingerprint(model: torch.nn.Module) -> float:
    return float(next(model.parameters()).detach().double().sum())


class ScriptedScorer:
    """Validation score: ``curve[evaluation number]``; test score: the fingerprint of the weights being scored."""

    name: ClassVar[str] = "scripted"
    Params: ClassVar[type] = NoParams
    main_metric: ClassVar[str] = "score"

    def __init__(self, validation: list, curve: list[float]):
        self.validation, self.curve, self.calls, self.test_calls = validation, curve, 0, 0

    def score(self, context, examples) -> ScoreResult:
        if examples is self.validation:
            value, self.calls = self.curve[self.calls], self.calls + 1
        else:
            value, self.test_calls = fingerprint(context.model), self.test_calls + 1
        return ScoreResult({"score": value}, [{"index": 0, "correct": True, "scores": {"score": value}}])


def make_runner(tmp_path: Path, gsm8k_dir: Path, select_on: str, curve: list[float], validation_size: int = 8,
                metric: str = "scripted/score") -> TrialEvaluation:
    document = make_suite(tmp_path, gsm8k_dir)
    document["data"].update(validation_size=validation_size, eval_limit=2, train_limit=16)
    document["evaluation"].update(select_on=select_on, select_metric=metric, held_out_loss=True)
    trial = expand_grid(validate_suite(document))[0]
    prepared = prepare(trial, torch.device("cpu"))
    runner = TrialEvaluation(prepared, Recorder(trial, None, None, is_main=True), tmp_path / "work")
    runner.scorers = [ScriptedScorer(prepared.splits.validation, curve)]
    return runner


def train_steps(runner: TrialEvaluation, n: int) -> list[float]:
    """Stand-in for training: move the weights at each step, evaluate, and return the weight fingerprints."""
    prints = []
    for step in range(1, n + 1):
        with torch.no_grad():
            next(runner.p.module.parameters()).add_(0.01 * step)
        runner.periodic(step)
        prints.append(fingerprint(runner.p.module.model))
    return prints


def test_best_on_validation_differs_from_last(tmp_path: Path, gsm8k_dir: Path) -> None:
    runner = make_runner(tmp_path, gsm8k_dir, "validation", curve=[0.2, 0.9, 0.4])
    prints = train_steps(runner, 3)
    final = runner.final(step=3)
    assert runner.scorers[0].test_calls == 2  # last and best scored apart
    assert final["best/step"] == 2
    assert final["best/val/scripted/score"] == 0.9
    assert final["best/test/scripted/score"] == pytest.approx(prints[1])  # the weights of step 2 were scored
    assert final["last/test/scripted/score"] == pytest.approx(prints[2])
    assert final["best/test/scripted/score"] != final["last/test/scripted/score"]
    assert final["best/test/loss"] != final["last/test/loss"]  # held-out loss of the two checkpoints, too
    assert "last/test/acc/ntp" in final and "best/test/acc/ntp" in final  # per-horizon rows for compare
    assert not any(name.startswith("best_on_test/") for name in final)
    assert fingerprint(runner.p.module.model) == pytest.approx(prints[2])  # the last weights are restored


def test_best_that_is_the_last_is_copied_not_rescored(tmp_path: Path, gsm8k_dir: Path) -> None:
    runner = make_runner(tmp_path, gsm8k_dir, "validation", curve=[0.2, 0.3, 0.4])
    prints = train_steps(runner, 3)
    final = runner.final()  # the step of the last evaluation is known from training
    assert runner.scorers[0].test_calls == 1
    assert final["best/step"] == 3
    assert final["best/test/scripted/score"] == final["last/test/scripted/score"] == pytest.approx(prints[2])


def test_selection_on_test_only_when_asked_and_labelled(tmp_path: Path, gsm8k_dir: Path) -> None:
    # On test the scripted score is the weight fingerprint, which grows with every step: the last one wins. Make
    # the weights go back down after step 2 so that the test-selected checkpoint is step 2.
    runner = make_runner(tmp_path, gsm8k_dir, "test", curve=[0.9, 0.1, 0.1])
    prints = []
    for step, shift in ((1, 0.5), (2, 0.5), (3, -2.0)):
        with torch.no_grad():
            next(runner.p.module.parameters()).add_(shift)
        metrics = runner.periodic(step)
        assert "test/scripted/score" in metrics and "val/scripted/score" in metrics  # both splits are scored
        prints.append(fingerprint(runner.p.module.model))
    final = runner.final(step=3)
    assert final["best_on_test/step"] == 2  # chosen by test, not by validation (which peaked at step 1)
    assert final["best_on_test/test/scripted/score"] == pytest.approx(prints[1])
    assert not any(name.startswith("best/") for name in final)


def test_no_validation_split_reports_only_the_last(tmp_path: Path, gsm8k_dir: Path) -> None:
    runner = make_runner(tmp_path, gsm8k_dir, "validation", curve=[], validation_size=0)
    train_steps(runner, 2)  # periodic evaluation falls back to the test split for learning curves
    final = runner.final(step=2)
    assert "last/test/scripted/score" in final
    assert not any(name.startswith(("best/", "best_on_test/")) for name in final)


def test_unknown_selection_metric_is_a_clear_error(tmp_path: Path, gsm8k_dir: Path) -> None:
    runner = make_runner(tmp_path, gsm8k_dir, "validation", curve=[0.5], metric="scripted/scor")
    with pytest.raises(SelectionError, match="'scripted/scor'.*available: .*scripted/score"):
        runner.periodic(1)


def test_improvement_rule() -> None:
    assert improves(0.5, None, True) and improves(0.5, 0.4, True) and not improves(0.4, 0.4, True)
    assert improves(1.0, 2.0, False) and not improves(float("nan"), 0.1, True)
