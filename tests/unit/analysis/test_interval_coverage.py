"""Do our 95% intervals cover 95%? Thousands of simulated experiments at 3 and 5 seeds, each seed's value drawn from
a distribution whose mean is known, through the same function ``summarise`` and ``compare_seeds`` use
(:func:`mtp_bench.analysis.stats.t_interval`, vectorised over experiments). The interval must contain the true mean
in at least 93% of them, for a proportion (accuracy on 300 questions, with seed abilities from a skewed Beta, and
near the top of [0, 1] where clipping acts) and for a paired difference of proportions. Seeds whose values would
round all alike give no interval and count as misses.

The regime is the one the t-interval is for: per-seed values that vary smoothly (unimodal, moderately skewed). Where
seeds are all-or-nothing (a seed learns the task or does not), no interval from 3 seeds can keep its promise; the
stats module says so.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from mtp_bench.analysis import stats

EXPERIMENTS = 4000
QUESTIONS = 300  # each seed's accuracy is a proportion over this many test questions
UNIT = (0.0, 1.0)
FLOOR = 0.93


def accuracy(rng: np.random.Generator, a: float, b: float, n: int) -> np.ndarray:
    """[experiments, n] accuracies: each seed's ability ~ Beta(a, b), its score Binomial(QUESTIONS, ability) /
    QUESTIONS. The true mean is a / (a + b) (binomial noise adds no bias)."""
    return rng.binomial(QUESTIONS, rng.beta(a, b, size=(EXPERIMENTS, n))) / QUESTIONS


def clipped_normal_mean(mu: float, sigma: float) -> float:
    """E[min(X, 1)] for X ~ N(mu, sigma) (the lower clip at 0 is negligible for the values used here)."""
    z = (1 - mu) / sigma
    return mu - ((mu - 1) * scipy_stats.norm.cdf(-z) + sigma * scipy_stats.norm.pdf(z))


def coverage(values: np.ndarray, truth: float, bounds: tuple[float, float] | None) -> float:
    low, high = stats.t_interval(values, bounds)
    return float(np.mean((low <= truth) & (truth <= high)))  # NaN (no interval) compares False: a miss


@pytest.mark.parametrize("n", [3, 5])
def test_proportion_intervals_cover_at_least_93_percent(n: int) -> None:
    rng = np.random.default_rng(n)
    skewed_up = accuracy(rng, 8, 3, n)  # mean 0.727, skewness -0.54
    skewed_down = accuracy(rng, 4, 12, n)  # mean 0.25, skewness +0.53
    near_one = np.clip(rng.normal(0.9, 0.08, size=(EXPERIMENTS, n)), 0, 1)  # a tenth of seeds at the ceiling
    cases = [(skewed_up, 8 / 11), (skewed_down, 0.25), (near_one, clipped_normal_mean(0.9, 0.08))]
    for values, truth in cases:
        assert coverage(values, truth, UNIT) >= FLOOR, (n, truth)
    low, high = stats.t_interval(near_one, UNIT)
    raw_low, raw_high = stats.t_interval(near_one)
    assert np.nanmean(raw_high > 1) > 0.2 and np.nanmax(high) == 1.0  # clipping acts, and never loses the mean
    assert coverage(near_one, cases[2][1], UNIT) == coverage(near_one, cases[2][1], None)
    if n == 3:  # the old seed interval: a percentile bootstrap over 3 seeds is about their [min, max]
        old = [np.mean((v.min(axis=1) <= t) & (t <= v.max(axis=1))) for v, t in cases]
        assert max(old) < 0.8


@pytest.mark.parametrize("n", [3, 5])
def test_paired_difference_intervals_cover_at_least_93_percent(n: int) -> None:
    rng = np.random.default_rng(10 + n)
    method, baseline = accuracy(rng, 6, 4, n), accuracy(rng, 5, 5, n)  # true difference 0.6 - 0.5 = 0.1
    assert coverage(method - baseline, 0.1, stats.difference_bounds(UNIT)) >= FLOOR
    # A method that helps every seed by a varying amount, seeds sharing their difficulty with the baseline.
    shared = rng.beta(5, 5, size=(EXPERIMENTS, n))
    gain = rng.normal(0.05, 0.04, size=(EXPERIMENTS, n))
    paired = rng.binomial(QUESTIONS, np.clip(shared + gain, 0, 1)) / QUESTIONS - rng.binomial(QUESTIONS, shared) / \
        QUESTIONS
    truth = float(np.mean(np.clip(shared + gain, 0, 1) - shared))  # clipping at 1 is rare; its effect is averaged
    assert coverage(paired, truth, stats.difference_bounds(UNIT)) >= FLOOR


def test_summarise_and_compare_seeds_use_the_simulated_interval() -> None:
    """The simulated function is the one the tables print: summarise and compare_seeds give the same ends."""
    rng = np.random.default_rng(0)
    method, baseline = accuracy(rng, 6, 4, 5)[:4], accuracy(rng, 5, 5, 5)[:4]
    low, high = stats.t_interval(method, UNIT)
    d_low, d_high = stats.t_interval(method - baseline, stats.difference_bounds(UNIT))
    for i in range(4):
        summary = stats.summarise(list(method[i]), UNIT)
        assert (summary.low, summary.high) == pytest.approx((low[i], high[i]))
        paired = stats.compare_seeds(list(range(5)), method[i], baseline[i], UNIT)
        assert (paired.low, paired.high) == pytest.approx((d_low[i], d_high[i]))
        assert not math.isnan(paired.low)
