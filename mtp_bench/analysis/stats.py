"""Statistics for comparing methods, with the seed as the unit of inference (each seed is a separately trained
model; questions answered by one model are not independent replications of the training run).

Per method and metric (:func:`summarise`): the mean over seeds and a 95% interval over seeds — a percentile
bootstrap over seeds for bounded metrics (proportions in [0, 1], and non-negative quantities such as losses, costs
and times: the interval stays in range), Student-t otherwise. One seed: no interval; two seeds: both values and no
interval (two seeds give no useful interval); seeds that all agree: a note, never a silent zero-width interval.

Method against baseline (:func:`compare_seeds`), seed s paired with seed s:

- the per-seed differences and their mean;
- the interval: with per-question outcomes and at least 3 seeds, a **two-level bootstrap** (resample seeds, and
  resample the test questions — one draw shared by every seed, because every seed answers the same questions, so
  copying a seed adds nothing); without them, a percentile bootstrap over the per-seed differences for bounded
  metrics (proportions), a paired t-interval otherwise;
- p-values over seeds: the paired t-test (``scipy.stats.ttest_rel``), the exact paired permutation test (all 2^n
  sign flips of the differences) and the exact sign test (``scipy.stats.binomtest`` on wins against losses);
- within-seed evidence: McNemar's exact test per seed on per-question correctness (a sign-flip test for graded
  scores). It is conditional on these trained models — it says whether *this* model differs on *these* questions,
  not whether the objective does — and is never the headline p;
- a power note: the smallest difference a paired t-test at alpha 0.05 detects with power 0.8 at this n, from the
  observed SD of the per-seed differences, and the seeds needed to detect the observed difference.

Every bootstrap and permutation draw comes from a fixed-seed generator, so outputs repeat exactly.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

CONFIDENCE = 0.95
ALPHA, POWER = 0.05, 0.8
N_RESAMPLES = 9999
SEED = 0  # bootstrap and permutation draws repeat from run to run
_CHUNK = 500  # bootstrap resamples drawn at a time (memory: seeds x questions x chunk)
MAX_SEEDS_SEARCHED = 1000

ONE_SEED = "one seed, no interval"
TWO_SEEDS = "two seeds give no useful interval"
NO_SPREAD = "no spread across seeds (all equal): no interval"

T_INTERVAL, SEED_BOOTSTRAP, TWO_LEVEL = "t", "seed bootstrap", "two-level bootstrap"


@dataclass(frozen=True)
class Summary:
    """Mean of per-seed values with an interval over seeds (``low``/``high`` NaN when there is none, with a
    ``note`` saying why)."""

    mean: float
    low: float
    high: float
    n: int
    std: float
    values: tuple[float, ...] = ()
    interval: str = ""  # T_INTERVAL or SEED_BOOTSTRAP; "" without an interval
    note: str = ""

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))


@dataclass(frozen=True)
class WithinSeed:
    """One seed's question-level test (conditional on the two trained models of that seed)."""

    seed: int | None
    test: str  # "mcnemar-exact" or "sign-flip"
    p_value: float
    n_questions: int
    method_only: int | None = None  # McNemar: questions only the method got right
    baseline_only: int | None = None  # ... only the baseline got right


@dataclass(frozen=True)
class Power:
    """What a paired t-test over seeds could detect (alpha ``ALPHA``, power ``POWER``)."""

    sd: float  # SD of the per-seed differences
    n: int
    detectable: float | None  # smallest |difference| detected at this n
    seeds_needed: int | None  # seeds to detect the observed difference (None: over MAX_SEEDS_SEARCHED or none)


@dataclass(frozen=True)
class SeedComparison:
    """Method minus baseline over paired seeds."""

    seeds: tuple[int | None, ...]
    differences: tuple[float, ...]
    delta: float
    low: float
    high: float
    interval: str  # TWO_LEVEL, SEED_BOOTSTRAP or T_INTERVAL; "" without an interval
    note: str
    p_t: float  # paired t-test over seeds (NaN when undefined)
    p_permutation: float  # exact paired permutation test over seeds
    p_sign: float  # exact sign test over seeds (NaN without a decided pair)
    wins: int
    losses: int
    within: tuple[WithinSeed, ...] = field(default_factory=tuple)
    power: Power | None = None

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))


# ------------------------------------------------------------------------------------------- over seeds ----
def _clean(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)


def mean_ci(values: Sequence[float | None], confidence: float = CONFIDENCE) -> Summary:
    """Mean and two-sided Student-t interval of independent per-seed values (unbounded quantities: steps, costs).
    One seed, or no spread, has no interval."""
    data = _clean(values)
    n = int(data.size)
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, 0, math.nan)
    mean, kept = float(data.mean()), tuple(float(v) for v in data)
    if n == 1:
        return Summary(mean, math.nan, math.nan, 1, math.nan, kept, note=ONE_SEED)
    if np.all(data == data[0]):  # (the computed SD of equal values can be 1e-17 rather than 0)
        return Summary(mean, math.nan, math.nan, n, 0.0, kept, note=NO_SPREAD)
    std = float(data.std(ddof=1))
    low, high = stats.t.interval(confidence, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    return Summary(mean, float(low), float(high), n, std, kept, T_INTERVAL)


def seed_bootstrap(values: np.ndarray, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                   seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over seeds: it lies within the range of the values, so a bounded
    metric's interval stays in bounds. (With few seeds it is narrow — about the range of the values for 3 — and
    under-covers; the note and the power line say how little few seeds show.)"""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def summarise(values: Sequence[float | None], bounded: tuple[float, float] | None = None,
              confidence: float = CONFIDENCE) -> Summary:
    """Mean over seeds with its interval: t for unbounded metrics, a seed bootstrap for bounded ones; none for one
    or two seeds, or when every seed agrees (each with its note)."""
    summary = mean_ci(values, confidence)
    if summary.n == 2:
        return Summary(summary.mean, math.nan, math.nan, 2, summary.std, summary.values,
                       note=TWO_SEEDS if summary.std else NO_SPREAD)
    if bounded is None or not summary.has_ci:
        return summary
    low, high = seed_bootstrap(np.asarray(summary.values), confidence)
    return Summary(summary.mean, low, high, summary.n, summary.std, summary.values, SEED_BOOTSTRAP)


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test of wins against losses (ties left out); NaN without a decided pair."""
    return float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else math.nan


def exact_permutation_p(differences: np.ndarray) -> float:
    """Two-sided exact paired permutation test of mean difference 0: every one of the 2^n sign flips of the
    differences (scipy enumerates them all when n_resamples is infinite). 1 when every difference is 0; NaN for
    fewer than 2 seeds."""
    d = np.asarray(differences, dtype=float)
    if d.size < 2:  # one seed: nothing to permute
        return math.nan
    if not np.any(d):
        return 1.0
    result = stats.permutation_test((d,), lambda x, axis: x.mean(axis=axis), permutation_type="samples",
                                    vectorized=True, n_resamples=math.inf if d.size <= 20 else N_RESAMPLES,
                                    **_rng_argument(stats.permutation_test, SEED))
    return float(result.pvalue)


def paired_t_p(differences: np.ndarray) -> float:
    """Paired t-test p over seeds (that of ``scipy.stats.ttest_rel``); NaN for fewer than 2 seeds or no spread."""
    d = np.asarray(differences, dtype=float)
    if d.size < 2 or np.all(d == d[0]):
        return math.nan
    return float(stats.ttest_1samp(d, 0.0).pvalue)


# ------------------------------------------------------------------------------------------------- power ----
def paired_t_power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of a two-sided paired t-test over n seeds against a true mean difference ``effect`` (noncentral t)."""
    df, noncentrality = n - 1, abs(effect) / sd * math.sqrt(n)
    critical = stats.t.ppf(1 - alpha / 2, df)
    upper, lower = float(stats.nct.sf(critical, df, noncentrality)), float(stats.nct.cdf(-critical, df, noncentrality))
    # scipy's nct can give NaN far in a tail: the wrong-sign tail is then ~0, the right-sign one ~1.
    return (1.0 if math.isnan(upper) else upper) + (0.0 if math.isnan(lower) else lower)


def power_note(differences: np.ndarray, alpha: float = ALPHA, power: float = POWER) -> Power | None:
    """Smallest detectable difference at this n, and seeds needed for the observed one; None below 2 seeds or
    without spread (no SD to work from)."""
    d = np.asarray(differences, dtype=float)
    if d.size < 2 or np.all(d == d[0]):
        return None
    sd, n = float(d.std(ddof=1)), int(d.size)
    detectable = float(optimize.brentq(lambda e: paired_t_power(e, sd, n, alpha) - power, 1e-9 * sd, 1e3 * sd))
    needed = None
    if float(d.mean()) != 0.0:
        needed = next((k for k in range(2, MAX_SEEDS_SEARCHED + 1)
                       if paired_t_power(float(d.mean()), sd, k, alpha) >= power), None)
    return Power(sd, n, detectable, needed)


# ---------------------------------------------------------------------------------------- per question ----
def two_level_bootstrap(method: np.ndarray, baseline: np.ndarray, confidence: float = CONFIDENCE,
                        n_resamples: int = N_RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """Percentile interval of mean(method - baseline) from [seeds, questions] arrays: each resample draws seeds
    with replacement (paired) and questions with replacement (one draw shared by every seed, since every seed
    answers the same test questions). Questions are drawn from their own generator, so a store whose seeds are
    copies of one seed gets exactly the interval of that one seed."""
    d = np.asarray(method, dtype=float) - np.asarray(baseline, dtype=float)
    n_seeds, n_questions = d.shape
    question_rng, seed_rng = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, _CHUNK):
        k = min(_CHUNK, n_resamples - start)
        questions = question_rng.integers(0, n_questions, size=(k, n_questions))
        seeds = seed_rng.integers(0, n_seeds, size=(k, n_seeds))
        per_seed = d[:, questions].mean(axis=2)  # [seeds, k]: each seed's mean over the drawn questions
        means[start:start + k] = np.take_along_axis(per_seed.T, seeds, axis=1).mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def mcnemar_exact(method: np.ndarray, baseline: np.ndarray) -> tuple[float, int, int]:
    """Two-sided exact McNemar p-value for paired 0/1 outcomes: under the null, each discordant pair is equally
    likely to favour either side, so the count favouring the method is Binomial(discordant, 1/2).

    Returns (p-value, pairs only the method got right, pairs only the baseline got right).
    """
    a, b = np.asarray(method, dtype=bool).ravel(), np.asarray(baseline, dtype=bool).ravel()
    method_only, baseline_only = int((a & ~b).sum()), int((~a & b).sum())
    if method_only + baseline_only == 0:
        return 1.0, 0, 0
    return float(stats.binomtest(method_only, method_only + baseline_only, 0.5).pvalue), method_only, baseline_only


def is_binary(values: np.ndarray) -> bool:
    return bool(np.isin(np.asarray(values, dtype=float), (0.0, 1.0)).all())


def within_seed(seed: int | None, method: np.ndarray, baseline: np.ndarray) -> WithinSeed:
    """One seed's question-level test: McNemar's exact test on 0/1 outcomes, else a sign-flip permutation test on
    the per-question differences."""
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    if is_binary(a) and is_binary(b):
        p, method_only, baseline_only = mcnemar_exact(a, b)
        return WithinSeed(seed, "mcnemar-exact", p, int(a.size), method_only, baseline_only)
    d = a - b
    if not np.any(d):
        return WithinSeed(seed, "sign-flip", 1.0, int(a.size))
    result = stats.permutation_test((d,), lambda x, axis: x.mean(axis=axis), permutation_type="samples",
                                    vectorized=True, n_resamples=N_RESAMPLES,
                                    **_rng_argument(stats.permutation_test, SEED))
    return WithinSeed(seed, "sign-flip", float(result.pvalue), int(a.size))


def _rng_argument(function: object, seed: int) -> dict[str, object]:
    """scipy 1.15 renamed ``random_state`` to ``rng``; pass whichever this scipy has."""
    parameters = inspect.signature(function).parameters
    return {"rng" if "rng" in parameters else "random_state": np.random.default_rng(seed)}


# ------------------------------------------------------------------------------------------- comparison ----
def compare_seeds(seeds: Sequence[int | None], method: Sequence[float], baseline: Sequence[float],
                  bounded: tuple[float, float] | None = None,
                  per_question: tuple[np.ndarray, np.ndarray] | None = None,
                  confidence: float = CONFIDENCE) -> SeedComparison:
    """Method minus baseline over paired seeds (``method[i]`` and ``baseline[i]`` are seed ``seeds[i]``).
    ``per_question``: [seeds, questions] outcomes of each side, in the same seed order, when both logged them."""
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    d = np.round(a - b, 12)  # 0.55 - 0.45 and 0.50 - 0.40 are the same difference, and 0.3 - 0.3 a tie
    n = int(d.size)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    within = tuple(within_seed(s, per_question[0][i], per_question[1][i]) for i, s in enumerate(seeds)) \
        if per_question is not None else ()
    low = high = math.nan
    interval, note = "", ""
    if n == 1:
        note = ONE_SEED
    elif n == 2:
        note = TWO_SEEDS
    else:
        if np.all(d == d[0]):
            note = "every seed gives the same difference"
        if per_question is not None and np.any(per_question[0] != per_question[1]):
            low, high = two_level_bootstrap(*per_question, confidence)
            interval = TWO_LEVEL
        elif per_question is not None:
            note = "same outcome on every question in every seed: no interval"
        elif note:
            note += ": no interval"
        elif bounded is not None and math.isfinite(bounded[1]):  # a difference of proportions: within +-1
            low, high = seed_bootstrap(d, confidence)
            interval = SEED_BOOTSTRAP
        else:
            summary = mean_ci(d, confidence)
            low, high, interval = summary.low, summary.high, T_INTERVAL
    return SeedComparison(tuple(seeds), tuple(float(x) for x in d), float(d.mean()) if n else math.nan, low, high,
                          interval, note, paired_t_p(d), exact_permutation_p(d), sign_test(wins, losses), wins,
                          losses, within, power_note(d))
