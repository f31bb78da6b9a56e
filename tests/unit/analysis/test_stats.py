"""The statistics of ``mtp-bench compare`` with golden numbers: the seed as the unit (duplicated seeds add nothing),
seed-level t-intervals clipped to the metric's range (t quantiles from a table), the two-level bootstrap kept as
within-test-set evidence, one and two seeds rendered without an interval, exact permutation and sign tests against
hand counts, the power note against the noncentral t, and deterministic bootstraps. (Coverage of the intervals is
simulated in ``test_interval_coverage.py``.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from mtp_bench.analysis import stats
from mtp_bench.analysis.render import mean_text

T_975_DF2 = 4.302652729911275  # two-sided 95% Student-t quantile, 2 degrees of freedom (from a t table)

def outcomes(correct: list[set[int]], questions: int = 20) -> np.ndarray:
    """[seeds, questions] 0/1 outcomes from the set of questions each seed got right."""
    return np.array([[float(i in right) for i in range(questions)] for right in correct])


# 3 seeds x 20 questions; accuracies: method 0.50, 0.60, 0.45; baseline 0.40, 0.45, 0.50.
METHOD = outcomes([set(range(10)), set(range(12)), set(range(3, 12))])
BASELINE = outcomes([set(range(8)), set(range(9)), set(range(10))])


def test_seed_level_difference_interval_and_p_values_match_scipy_and_hand_counts() -> None:
    a, b = METHOD.mean(axis=1), BASELINE.mean(axis=1)
    result = stats.compare_seeds([0, 1, 2], a, b, (0.0, 1.0), (METHOD, BASELINE))
    differences = np.array([0.10, 0.15, -0.05])
    assert result.differences == pytest.approx(tuple(differences))
    assert result.delta == pytest.approx(differences.mean())
    assert result.p_t == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
    # Exact permutation: of the 8 sign patterns of (0.10, 0.15, -0.05), those with |mean| >= 0.2/3 are
    # (+,+,-), (+,+,+), (-,-,+), (-,-,-): 4 of 8.
    assert result.p_permutation == pytest.approx(4 / 8)
    assert (result.wins, result.losses) == (2, 1) and result.p_sign == pytest.approx(1.0)  # 2*P(B(3,.5)<=1) capped
    # The headline interval is the t-interval over the three per-seed differences (inside [-1, 1]: not clipped).
    half = T_975_DF2 * differences.std(ddof=1) / math.sqrt(3)
    assert result.interval == stats.T_INTERVAL and not result.clipped
    assert (result.low, result.high) == pytest.approx((differences.mean() - half, differences.mean() + half))
    # The two-level bootstrap (seeds and questions) is kept beside it, as within-test-set evidence.
    assert result.has_two_level and result.two_level[0] < result.delta < result.two_level[1]
    assert result.two_level == stats.two_level_bootstrap(METHOD, BASELINE)
    # Within seed 0: only the method got questions 8 and 9 right: McNemar 2 * (1/2)^2.
    assert result.within[0].p_value == pytest.approx(0.5) and result.within[0].method_only == 2


def test_duplicated_seeds_do_not_shrink_the_interval() -> None:
    """The pooled McNemar test grows more significant when one seed's questions are copied into more seeds; the
    seed-level interval must not: three or six copies of one seed give exactly that seed's question interval."""
    one = stats.two_level_bootstrap(METHOD[:1], BASELINE[:1])
    three = stats.two_level_bootstrap(np.repeat(METHOD[:1], 3, axis=0), np.repeat(BASELINE[:1], 3, axis=0))
    six = stats.two_level_bootstrap(np.repeat(METHOD[:1], 6, axis=0), np.repeat(BASELINE[:1], 6, axis=0))
    assert one == three == six
    pooled_one = stats.mcnemar_exact(METHOD[:1], BASELINE[:1])[0]
    pooled_three = stats.mcnemar_exact(np.repeat(METHOD[:1], 3, axis=0), np.repeat(BASELINE[:1], 3, axis=0))[0]
    assert pooled_three < pooled_one  # what the old pooled p did: 0.5 -> 0.03 with no new information
    copies = stats.compare_seeds([0, 1, 2], [0.5] * 3, [0.4] * 3, (0.0, 1.0),
                                 (np.repeat(METHOD[:1], 3, axis=0), np.repeat(BASELINE[:1], 3, axis=0)))
    assert copies.two_level == three
    assert not copies.has_ci and copies.note == stats.SAME_DIFFERENCE  # no spread over seeds: no seed interval
    assert copies.p_permutation == pytest.approx(0.25)  # three equal seeds: 2 of 8 sign patterns, nothing more


def test_two_level_bootstrap_without_question_spread_is_the_seed_range() -> None:
    """When every question of a seed has the same difference, only seeds vary; with 3 seeds the 2.5% quantile of
    the resampled means is the smallest seed (drawn three times with probability 1/27 > 2.5%)."""
    method = np.array([[1.0] * 10, [1.0] * 10, [0.0] * 10])
    baseline = np.array([[0.0] * 10, [1.0] * 10, [0.0] * 10])
    assert stats.two_level_bootstrap(method, baseline) == pytest.approx((0.0, 1.0))
    assert stats.two_level_bootstrap(method, baseline) == stats.two_level_bootstrap(method, baseline)  # fixed RNG


@pytest.mark.parametrize("values", [[0.0, 0.0, 0.02], [0.0, 0.01, 0.03, 0.0, 0.0], [0.98, 1.0, 1.0],
                                    [0.9, 1.0, 1.0, 0.97]])
def test_bounded_intervals_are_t_intervals_clipped_to_zero_one(values: list[float]) -> None:
    low, high = (float(x) for x in stats.t_interval(np.array(values)))
    assert low < 0 or high > 1  # the raw t-interval leaves [0, 1]
    n, data = len(values), np.array(values)
    half = scipy_stats.t.ppf(0.975, n - 1) * data.std(ddof=1) / math.sqrt(n)
    assert (low, high) == pytest.approx((data.mean() - half, data.mean() + half))
    summary = stats.summarise(values, (0.0, 1.0))
    assert summary.interval == stats.T_INTERVAL and summary.clipped
    assert (summary.low, summary.high) == pytest.approx((max(low, 0.0), min(high, 1.0)))
    assert 0.0 <= summary.low <= summary.mean <= summary.high <= 1.0


def test_bounded_difference_is_clipped_to_its_range() -> None:
    result = stats.compare_seeds([0, 1, 2], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0], (0.0, 1.0))
    # Differences +1, -1, +1: mean 1/3, SD 2/sqrt(3); the raw t-interval 1/3 -+ 4.303 x 2/3 leaves [-1, 1].
    raw = stats.t_interval(np.array([1.0, -1.0, 1.0]))
    assert raw[0] == pytest.approx(1 / 3 - T_975_DF2 * 2 / 3) and raw[0] < -1.0
    assert result.interval == stats.T_INTERVAL and result.clipped and (result.low, result.high) == (-1.0, 1.0)
    assert stats.difference_bounds((0.0, 1.0)) == (-1.0, 1.0)
    assert stats.difference_bounds((0.0, math.inf)) is None  # a difference of losses can have any sign and size


def test_one_and_two_seeds_are_rendered_without_an_interval() -> None:
    one = stats.summarise([0.4533], (0.0, 1.0))
    assert not one.has_ci and mean_text(one) == "0.4533 (one seed, no interval)"
    two = stats.summarise([0.4133, 0.4933], (0.0, 1.0))
    assert not two.has_ci
    assert mean_text(two) == "0.4533 (seeds 0.413, 0.493; two seeds: no interval)"
    assert mean_text(two, compact=True) == "0.4533 (seeds 0.413, 0.493; no interval)"
    assert all(np.isnan(stats.t_interval(np.array([0.4133, 0.4933]))))  # the core refuses two seeds too
    same = stats.summarise([0.5, 0.5, 0.5], (0.0, 1.0))
    assert not same.has_ci and "no spread" in mean_text(same)
    paired = stats.compare_seeds([0, 1], [0.5, 0.6], [0.4, 0.4], (0.0, 1.0), (METHOD[:2], BASELINE[:2]))
    assert not paired.has_ci and paired.note == stats.TWO_SEEDS and paired.differences == pytest.approx((0.1, 0.2))
    assert not paired.has_two_level  # no interval of any kind from two seeds
    single = stats.compare_seeds([0], [0.5], [0.4], (0.0, 1.0))
    assert single.note == stats.ONE_SEED and math.isnan(single.p_t) and single.power is None


def test_power_note_matches_the_noncentral_t() -> None:
    rng = np.random.default_rng(1)
    differences = rng.normal(0.05, 0.1, size=10)
    power = stats.power_note(differences)
    sd = differences.std(ddof=1)
    # Simulated: paired t-tests on 10 seeds whose true mean difference is the detectable one reject 80% of the time.
    draws = np.random.default_rng(2).normal(power.detectable, sd, size=(200_000, 10))
    rejected = scipy_stats.ttest_1samp(draws, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.005)
    assert 0.98 < power.detectable / sd < 1.01  # effect size d ~ 1 at n = 10 (power tables)
    assert stats.paired_t_power(power.detectable, sd, 10) == pytest.approx(0.8)
    needed = power.seeds_needed
    observed = abs(differences.mean())
    assert stats.paired_t_power(observed, sd, needed) >= 0.8 > stats.paired_t_power(observed, sd, needed - 1)
    assert stats.power_note(np.array([0.1, 0.1, 0.1])) is None  # no spread: nothing to work from


def test_seeds_needed_is_the_fewest_with_enough_power_at_both_ends_of_the_range() -> None:
    """The bisection's edges: a huge effect needs the minimum of 2 seeds, a tiny one more than the range holds."""
    assert stats.power_note(np.array([1.0, 1.1, 0.9])).seeds_needed == next(
        k for k in range(2, 10) if stats.paired_t_power(1.0, 0.1, k) >= 0.8)
    assert stats.power_note(np.array([5.0, 5.001, 4.999])).seeds_needed == 2
    assert stats.power_note(np.array([0.001, 1.0, -0.99])).seeds_needed is None  # d ~ 0.0035: > 1,000 seeds


def test_exact_permutation_enumerates_every_sign_pattern() -> None:
    differences = np.array([0.3, 0.1, 0.2, 0.4, -0.05])
    signs = np.array(np.meshgrid(*[[-1, 1]] * 5)).reshape(5, -1).T
    means = np.abs((signs * differences).mean(axis=1))
    expected = (means >= abs(differences.mean()) - 1e-12).mean()
    assert stats.exact_permutation_p(differences) == pytest.approx(expected)


def test_non_negative_quantities_and_identical_questions_get_no_impossible_interval() -> None:
    from mtp_bench.analysis.names import bounds

    seconds = [387.0, 460.0, 25.0]
    raw_low, raw_high = (float(x) for x in stats.t_interval(np.array(seconds)))
    assert raw_low < 0  # a raw t-interval would allow negative training time
    summary = stats.summarise(seconds, bounds("train/seconds_total"))
    assert summary.interval == stats.T_INTERVAL and summary.clipped
    assert (summary.low, summary.high) == pytest.approx((0.0, raw_high))  # clipped at 0 only
    assert bounds("test/loss/ntp") == (0.0, math.inf) and bounds("test/exact_match/exact_match") == (0.0, 1.0)
    # Every question answered alike by both models in every seed: no zero-width interval, a note instead.
    same = np.zeros((3, 20))
    result = stats.compare_seeds([0, 1, 2], [0.0] * 3, [0.0] * 3, (0.0, 1.0), (same, same))
    assert not result.has_ci and not result.has_two_level and result.note == stats.SAME_DIFFERENCE
