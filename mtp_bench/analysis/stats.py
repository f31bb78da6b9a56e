"""Statistics for comparing methods, with the seed as the unit of inference (each seed is a separately trained
model; questions answered by one model are not independent replications of the training run).

Per method and metric (:func:`summarise`): the mean over seeds and a 95% **Student-t interval over seeds**, clipped
to the metric's range ([0, 1] for proportions, never below 0 for losses, costs and times). Clipping to the range
the mean can take never drops the true mean from an interval, so coverage is that of the t-interval. No interval
below 3 seeds (one seed has no spread; two give a t-interval wider than most metrics' whole range, and no percentile
interval is honest at two), and none when every seed agrees (a note, never a silent zero-width interval).

Why t and not a bootstrap: a percentile bootstrap over 3 seeds *is* about the [min, max] of the values, a ~75%
interval, and the two-level bootstrap (seeds and questions) covered 0.74-0.83 at 3 seeds when seeds differ.
Simulated with these functions (``tests/unit/analysis/test_interval_coverage.py``), the clipped t-interval covers >= 0.93 at 3
and 5 seeds when the seeds' values are unimodal and moderately skewed (as per-seed accuracies on a few hundred
questions are when training is stable). It relies on that: under strong skew (e.g. most seeds near 0 and a long
tail, skewness ~1.5) it covers ~0.89, and when seeds are all-or-nothing (a seed learns the task or does not) no
interval from 3 seeds can keep its promise: all three seeds can land on one side.

Method against baseline (:func:`compare_seeds`), seed s paired with seed s:

- the per-seed differences, their mean (Δ) and its 95% **t-interval over the per-seed differences** (the headline
  interval; a difference of proportions is clipped to [-1, 1]), none below 3 seeds;
- p-values over seeds: the paired t-test (``scipy.stats.ttest_rel``), the exact paired permutation test (all 2^n
  sign flips of the differences) and the exact sign test (``scipy.stats.binomtest`` on wins against losses). The
  exact tests cannot go below 2/2^n: they cannot reach p < 0.05 below 6 seeds (:data:`MIN_SEEDS_EXACT`);
- within-test-set evidence, never the headline: with per-question outcomes and at least 3 seeds, a **two-level
  bootstrap** of Δ (resample seeds, and resample the test questions — one draw shared by every seed, because every
  seed answers the same questions); and McNemar's exact test per seed on per-question correctness (a sign-flip test
  for graded scores), conditional on these trained models — it says whether *this* model differs on *these*
  questions, not whether the objective does;
- a power note for the paired t-test: the smallest difference it detects at alpha 0.05 with power 0.8 at this n,
  from the observed SD of the per-seed differences, and the seeds needed to detect the observed difference.

Whether a difference counts as shown is decided in :mod:`mtp_bench.analysis.verdict`.
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
MIN_SEEDS_INTERVAL = 3  # below this, no interval anywhere
MIN_SEEDS_EXACT = 6  # the fewest seeds whose exact tests can reach p < ALPHA (2 / 2^6 = 0.031)

ONE_SEED = "one seed, no interval"
TWO_SEEDS = "two seeds: no interval"
NO_SPREAD = "no spread across seeds (all equal): no interval"
SAME_DIFFERENCE = "every seed gives the same difference: no interval"

T_INTERVAL, TWO_LEVEL = "t over seeds", "two-level bootstrap"
Bounds = tuple[float, float] | None


@dataclass(frozen=True)
class Summary:
    """Mean of per-seed values with a t-interval over seeds (``low``/``high`` NaN when there is none, with a
    ``note`` saying why); ``clipped`` when an end of the interval was moved to the metric's range."""

    mean: float
    low: float
    high: float
    n: int
    std: float
    values: tuple[float, ...] = ()
    interval: str = ""  # T_INTERVAL; "" without an interval
    note: str = ""
    clipped: bool = False

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
    """Method minus baseline over paired seeds: the headline t-interval over seeds (``low``/``high``), and the
    two-level bootstrap over seeds and questions as within-test-set evidence (``two_level``, NaN without one)."""

    seeds: tuple[int | None, ...]
    differences: tuple[float, ...]
    delta: float
    low: float
    high: float
    interval: str  # T_INTERVAL; "" without an interval
    note: str
    p_t: float  # paired t-test over seeds (NaN when undefined)
    p_permutation: float  # exact paired permutation test over seeds
    p_sign: float  # exact sign test over seeds (NaN without a decided pair)
    wins: int
    losses: int
    within: tuple[WithinSeed, ...] = field(default_factory=tuple)
    power: Power | None = None
    clipped: bool = False  # an end of the interval was moved to the difference's range
    two_level: tuple[float, float] = (math.nan, math.nan)

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def ties(self) -> int:
        return self.n - self.wins - self.losses

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def has_two_level(self) -> bool:
        return not any(math.isnan(x) for x in self.two_level)


# ------------------------------------------------------------------------------------------- over seeds ----
def _clean(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)


def difference_bounds(bounds: Bounds) -> Bounds:
    """The range of a difference of two values of a metric: [-1, 1] for proportions; None when unbounded (a
    difference of non-negative quantities can have either sign and any size)."""
    if bounds is None or not all(math.isfinite(b) for b in bounds):
        return None
    return bounds[0] - bounds[1], bounds[1] - bounds[0]


def t_interval(values: np.ndarray, bounds: Bounds = None,
               confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Student-t interval of the mean over the last axis (the seeds), clipped to ``bounds``; vectorised
    over any leading axes. NaN where there are fewer than ``MIN_SEEDS_INTERVAL`` seeds or no spread."""
    data = np.asarray(values, dtype=float)
    n = data.shape[-1]
    if n < MIN_SEEDS_INTERVAL:
        nan = np.full(data.shape[:-1], math.nan)
        return nan, nan.copy()
    mean, std = data.mean(axis=-1), data.std(axis=-1, ddof=1)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    spread = ~np.all(data == data[..., :1], axis=-1)  # (the SD of equal values can be 1e-17 rather than 0)
    low, high = np.where(spread, mean - half, math.nan), np.where(spread, mean + half, math.nan)
    if bounds is not None:
        low, high = np.clip(low, *bounds), np.clip(high, *bounds)
    return low, high


def summarise(values: Sequence[float | None], bounded: Bounds = None, confidence: float = CONFIDENCE) -> Summary:
    """Mean over seeds with its t-interval over seeds, clipped to the metric's range (``bounded``); none below 3
    seeds or when every seed agrees (each with its note)."""
    data = _clean(values)
    n = int(data.size)
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, 0, math.nan)
    mean, kept = float(data.mean()), tuple(float(v) for v in data)
    if n == 1:
        return Summary(mean, math.nan, math.nan, 1, math.nan, kept, note=ONE_SEED)
    if np.all(data == data[0]):
        return Summary(mean, math.nan, math.nan, n, 0.0, kept, note=NO_SPREAD)
    std = float(data.std(ddof=1))
    if n < MIN_SEEDS_INTERVAL:
        return Summary(mean, math.nan, math.nan, n, std, kept, note=TWO_SEEDS)
    low, high = (float(x) for x in t_interval(data, bounded, confidence))
    raw = t_interval(data, None, confidence)
    return Summary(mean, low, high, n, std, kept, T_INTERVAL, clipped=(low, high) != (float(raw[0]), float(raw[1])))


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test of wins against losses (ties left out); NaN without a decided pair."""
    return float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else math.nan


def smallest_exact_p(n: int) -> float:
    """The smallest two-sided p the exact permutation and sign tests can give with n seeds: every seed on one side,
    2 of the 2^n sign patterns as extreme."""
    return min(1.0, 2.0 / 2 ** n)


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
    needed = _seeds_needed(float(d.mean()), sd, alpha, power) if float(d.mean()) != 0.0 else None
    return Power(sd, n, detectable, needed)


def _seeds_needed(effect: float, sd: float, alpha: float, power: float) -> int | None:
    """Fewest seeds (2..MAX_SEEDS_SEARCHED) whose paired t-test reaches ``power``; None beyond. Power grows with
    the number of seeds, so a bisection finds it (a linear scan cost seconds per comparison table)."""
    if paired_t_power(effect, sd, MAX_SEEDS_SEARCHED, alpha) < power:
        return None
    low, high = 1, MAX_SEEDS_SEARCHED  # power(low) < power (or low below the range), power(high) >= power
    while high - low > 1:
        middle = (low + high) // 2
        if paired_t_power(effect, sd, middle, alpha) >= power:
            high = middle
        else:
            low = middle
    return high


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
                  bounded: Bounds = None, per_question: tuple[np.ndarray, np.ndarray] | None = None,
                  confidence: float = CONFIDENCE) -> SeedComparison:
    """Method minus baseline over paired seeds (``method[i]`` and ``baseline[i]`` are seed ``seeds[i]``);
    ``bounded``: the metric's range. ``per_question``: [seeds, questions] outcomes of each side, in the same seed
    order, when both logged them (for the within-seed tests and the two-level bootstrap)."""
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    d = np.round(a - b, 12)  # 0.55 - 0.45 and 0.50 - 0.40 are the same difference, and 0.3 - 0.3 a tie
    n = int(d.size)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    within = tuple(within_seed(s, per_question[0][i], per_question[1][i]) for i, s in enumerate(seeds)) \
        if per_question is not None else ()
    low = high = math.nan
    interval, note, clipped = "", "", False
    if n == 1:
        note = ONE_SEED
    elif n == 2:
        note = TWO_SEEDS
    elif np.all(d == d[0]):
        note = SAME_DIFFERENCE
    else:
        summary = summarise(d, difference_bounds(bounded), confidence)
        low, high, interval, clipped = summary.low, summary.high, T_INTERVAL, summary.clipped
    two_level = (math.nan, math.nan)
    if per_question is not None and n >= MIN_SEEDS_INTERVAL and np.any(per_question[0] != per_question[1]):
        two_level = two_level_bootstrap(*per_question, confidence)
    return SeedComparison(tuple(seeds), tuple(float(x) for x in d), float(d.mean()) if n else math.nan, low, high,
                          interval, note, paired_t_p(d), exact_permutation_p(d), sign_test(wins, losses), wins,
                          losses, within, power_note(d), clipped, two_level)
