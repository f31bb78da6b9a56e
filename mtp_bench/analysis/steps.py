"""When does each method learn? The data side of ``mtp-bench steps``: each trial's validation curve and cumulative
counters read from the store (the same trial selection as ``mtp-bench compare``: one finished run per trial id of
the suite), and when a curve first reaches a threshold, in steps, tokens, FLOPs or seconds.

Per trial, the periodic metric (``--metric``, else ``<split>/<selection metric>`` with the split the trial evaluated
periodically: ``val``, or ``test`` without a validation split) is read at every evaluation step; "steps to
accuracy" is the first evaluation step at which it reaches the threshold (so it is known only to the evaluation
interval). Tokens (positions the model processed, registers included), FLOPs (the loop's ``6 x parameters x
positions`` estimate) and training seconds (wall clock, evaluation excluded; noisy on a shared machine) are read from
the cumulative ``train/tokens_processed``, ``train/flops`` and ``train/seconds`` histories at that step (linearly
interpolated between the logged steps, never extrapolated past the last). The tables are built in
:mod:`mtp_bench.analysis.steps_report`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtp_bench.analysis.runs import select_runs, shared_cell
from mtp_bench.errors import BadInput
from mtp_bench.tracking import TAG_PERIODIC_SPLIT, TAG_SELECT_METRIC

CUMULATIVE = {"tokens": "train/tokens_processed", "flops": "train/flops", "seconds": "train/seconds"}


@dataclass
class TrialCurve:
    label: str
    method: str
    cell: str
    seed: int | None
    run_id: str
    metrics: dict[str, float]
    curve: dict[int, float]  # eval step -> periodic metric
    cumulative: dict[str, dict[int, float]] = field(default_factory=dict)  # tokens/flops/seconds at logged steps

    @property
    def last_step(self) -> int | None:
        return max(self.curve) if self.curve else None

    def first_reaching(self, threshold: float) -> int | None:
        return next((s for s in sorted(self.curve) if self.curve[s] >= threshold), None)

    def at(self, kind: str, step: int) -> float | None:
        """Cumulative tokens/FLOPs/seconds at ``step``: linear between logged steps (and from 0 at step 0); None
        without a history or past its last step (a counter is not extrapolated)."""
        history = dict(self.cumulative.get(kind) or {})
        if not history or step > max(history):
            return None
        history.setdefault(0, 0.0)
        steps = sorted(history)
        return float(np.interp(step, steps, [history[s] for s in steps]))


# ------------------------------------------------------------------------------------------------ reading ----
def read_trials(suite_path: str, overrides: list[str], store_uri: str | None, metric: str | None,
                extra_histories: list[str]) -> tuple[Any, list[TrialCurve], list[tuple[str, str, str]], str]:
    from mtp_bench.suite import expand_grid, load_suite
    from mtp_bench.tracking.store import Store, default_store

    suite = load_suite(suite_path, overrides)
    expected = {t.trial_id: t.label for t in expand_grid(suite)}
    store = Store(default_store(store_uri or suite.tracking.uri), suite.tracking.experiment or suite.name)
    runs, excluded = select_runs(store.trial_runs(suite.name), expected)
    if metric is None:
        named = Counter(f"{r.tags.get(TAG_PERIODIC_SPLIT, 'val')}/{r.tags[TAG_SELECT_METRIC]}"
                        for r in runs if r.tags.get(TAG_SELECT_METRIC))
        if not named:
            raise BadInput("no finished trial names its selection metric: pass --metric val/...")
        metric = named.most_common(1)[0][0]
    trials = [TrialCurve(run.label, run.method, run.cell, run.seed, run.run_id, run.metrics,
                         store.history(run.run_id, metric),
                         {key: store.history(run.run_id, CUMULATIVE.get(key, key))
                          for key in [*CUMULATIVE, *extra_histories]}) for run in runs]
    order = {m.display_name: i for i, m in enumerate(suite.methods)}
    trials.sort(key=lambda t: (t.cell, order.get(t.method, len(order)), t.seed if t.seed is not None else -1))
    return suite, trials, excluded, metric


def groups_of(trials: list[TrialCurve]) -> dict[tuple[str, str], list[TrialCurve]]:
    out: dict[tuple[str, str], list[TrialCurve]] = {}
    for trial in trials:
        out.setdefault((trial.cell, trial.method), []).append(trial)
    return out


def baseline_of(groups: dict[tuple[str, str], list[TrialCurve]], cell: str,
                baseline: str) -> list[TrialCurve] | None:
    return groups.get((shared_cell(cell), baseline))


def crossing(trial: TrialCurve, threshold: float, kind: str) -> tuple[float | None, bool]:
    """(value, censored) in ``kind`` units at the first evaluation reaching ``threshold``; for a trial that never
    reached it, the value at its last evaluation with censored True (the true value lies beyond: a lower bound).
    The value is None when unknown (no curve, or no counter history covering the step)."""
    step = trial.first_reaching(threshold)
    censored = step is None
    step = trial.last_step if censored else step
    if step is None:
        return None, True
    return (float(step) if kind == "steps" else trial.at(kind, step)), censored


def who_first(mine: tuple[float | None, bool], theirs: tuple[float | None, bool]) -> int | None:
    """-1 when ``mine`` reached the threshold first, +1 later, 0 a tie; None when neither reached it or the order is
    unknown (a censored side is beaten only by a value at or below its bound)."""
    (a, a_censored), (b, b_censored) = mine, theirs
    if a is None or b is None or (a_censored and b_censored):
        return None
    if a_censored:
        return 1 if b <= a else None
    if b_censored:
        return -1 if a <= b else None
    return (a > b) - (a < b)
