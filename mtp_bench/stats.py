"""Statistics for comparing methods, all through scipy: confidence intervals across seeds and paired tests.

- Across seeds: the mean and a two-sided Student-t interval (``scipy.stats.t``); one seed has no interval.
- Per question, against the baseline (``paired_sample_test``): each method's seed s is paired with the baseline's
  seed s (same initial weights and data order), and question i with question i.
  The difference in accuracy gets a 95% interval from a paired bootstrap that resamples *questions* (with all their
  seeds, so repeated seeds of one question are not counted as independent evidence). The p-value is McNemar's exact
  test (``scipy.stats.binomtest`` on the discordant pairs) when the per-sample scores are 0/1, pooled over the paired
  seeds; for graded scores, a paired sign-flip permutation test on the per-question differences.
- Without per-question data (held-out loss, costs): a paired t-test over the seeds both methods have.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 9999
SEED = 0  # bootstrap and permutation draws repeat from run to run


@dataclass(frozen=True)
class Interval:
    """Mean of per-seed values with a t-interval (``low``/``high`` are NaN when n < 2)."""

    mean: float
    low: float
    high: float
    n: int
    std: float

    @property
    def has_ci(self) -> bool:
        return self.n >= 2 and not math.isnan(self.low)


@dataclass(frozen=True)
class PairedResult:
    """Method minus baseline: the difference, its interval, a p-value and how it was obtained."""

    test: str  # "mcnemar-exact", "sign-flip", "paired-t" (see the module docstring)
    delta: float
    low: float
    high: float
    p_value: float
    n_pairs: int  # questions x paired seeds (per-question tests) or paired seeds (paired-t)
    method_only: int | None = None  # McNemar: pairs the method got right and the baseline wrong
    baseline_only: int | None = None  # ... and the other way round


def mean_ci(values: list[float] | np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean and two-sided Student-t interval of independent per-seed values."""
    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = int(data.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan)
    mean = float(data.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1, math.nan)
    std = float(data.std(ddof=1))
    if std == 0.0:
        return Interval(mean, mean, mean, n, 0.0)
    low, high = stats.t.interval(confidence, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    return Interval(mean, float(low), float(high), n, std)


def mcnemar_exact(method: np.ndarray, baseline: np.ndarray) -> tuple[float, int, int]:
    """Two-sided exact McNemar p-value for paired 0/1 outcomes: under the null, each discordant pair is equally
    likely to favour either side, so the count favouring the method is Binomial(discordant, 1/2).

    Returns (p-value, pairs only the method got right, pairs only the baseline got right).
    """
    a, b = np.asarray(method, dtype=bool).ravel(), np.asarray(baseline, dtype=bool).ravel()
    method_only, baseline_only = int((a & ~b).sum()), int((~a & b).sum())
    discordant = method_only + baseline_only
    if discordant == 0:
        return 1.0, 0, 0
    return float(stats.binomtest(method_only, discordant, 0.5).pvalue), method_only, baseline_only


def _rng_argument(function: object, seed: int) -> dict[str, object]:
    """scipy 1.15 renamed ``random_state`` to ``rng``; pass whichever this scipy has."""
    parameters = inspect.signature(function).parameters
    name = "rng" if "rng" in parameters else "random_state"
    return {name: np.random.default_rng(seed)}


def paired_bootstrap_ci(method: np.ndarray, baseline: np.ndarray, confidence: float = CONFIDENCE,
                        n_resamples: int = N_RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """Interval of mean(method) - mean(baseline) from a paired bootstrap over the first axis (questions; a second
    axis holds paired seeds).

    BCa, falling back to the percentile interval when BCa is undefined (e.g. every question agrees).
    """
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    if a.ndim == 2:  # [questions, seeds]: a question is resampled with all its seeds
        a, b = a.mean(axis=1), b.mean(axis=1)
    if a.shape[0] < 2:
        return math.nan, math.nan
    if np.array_equal(a, b):
        return 0.0, 0.0

    def difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return x.mean(axis=axis) - y.mean(axis=axis)

    for method_name in ("BCa", "percentile"):
        result = stats.bootstrap((a, b), difference, paired=True, vectorized=True, n_resamples=n_resamples,
                                 confidence_level=confidence, method=method_name,
                                 **_rng_argument(stats.bootstrap, seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if not (math.isnan(low) or math.isnan(high)):
            return low, high
    return math.nan, math.nan


def sign_flip_p_value(differences: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> float:
    """Two-sided paired permutation test of mean difference 0 (each pair's sign flipped at random)."""
    d = np.asarray(differences, dtype=float)
    if d.size == 0 or not np.any(d):
        return 1.0

    def mean(x: np.ndarray, axis: int) -> np.ndarray:
        return x.mean(axis=axis)

    result = stats.permutation_test((d,), mean, permutation_type="samples", vectorized=True,
                                    n_resamples=n_resamples, **_rng_argument(stats.permutation_test, seed))
    return float(result.pvalue)


def is_binary(values: np.ndarray) -> bool:
    return bool(np.isin(np.asarray(values, dtype=float), (0.0, 1.0)).all())


def paired_sample_test(method: np.ndarray, baseline: np.ndarray, confidence: float = CONFIDENCE) -> PairedResult:
    """Per-question comparison; ``method`` and ``baseline`` are [questions, paired seeds] (or [questions]) arrays
    of per-sample scores, row i and column s of one matching row i and column s of the other."""
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired scores need equal, non-empty shapes (got {a.shape} and {b.shape})")
    delta = float(a.mean() - b.mean())
    low, high = paired_bootstrap_ci(a, b, confidence)
    if is_binary(a) and is_binary(b):
        p_value, method_only, baseline_only = mcnemar_exact(a, b)
        return PairedResult("mcnemar-exact", delta, low, high, p_value, int(a.size), method_only, baseline_only)
    p_value = sign_flip_p_value((a - b).mean(axis=1))
    return PairedResult("sign-flip", delta, low, high, p_value, int(a.size))


def paired_seed_test(method: list[float], baseline: list[float], confidence: float = CONFIDENCE) -> PairedResult:
    """Paired t-test over seeds (value of the method's seed s against the baseline's seed s)."""
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    n = int(a.size)
    delta = float((a - b).mean()) if n else math.nan
    if n < 2:
        return PairedResult("paired-t", delta, math.nan, math.nan, math.nan, n)
    differences = a - b
    if np.all(differences == differences[0]):  # no spread: the t statistic is undefined
        return PairedResult("paired-t", delta, delta, delta, 1.0 if delta == 0 else math.nan, n)
    result = stats.ttest_rel(a, b)
    interval = result.confidence_interval(confidence)
    return PairedResult("paired-t", delta, float(interval.low), float(interval.high), float(result.pvalue), n)
