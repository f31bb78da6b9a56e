"""Whether a comparison shows a difference: the rule behind the one verdict line per method that ``mtp-bench
compare`` (and the end of ``mtp-bench run``) prints after its tables, and the ``verdict`` column of compare.csv.

**The rule.** A method's difference from the baseline (Δ, mean over paired seeds of method minus baseline) is
*shown* when both

1. the exact paired permutation test over seeds (all 2^n sign flips of the per-seed differences) gives p < 0.05,
   and
2. the 95% t-interval over the per-seed differences excludes 0 (equivalently, the paired t-test's p < 0.05).

The exact test needs no assumption about how seeds vary, but has no interval; the t-interval gives the size, but
leans on the per-seed differences being roughly normal. Asking both keeps the line honest where either one alone
would overstate: at 3-5 seeds a t-interval can exclude 0 while the exact test cannot go below 2/2^n (0.0625 at 5
seeds), so **nothing is shown below 6 seeds**; one outlying seed can move a t-test more than a permutation test.
When every seed gives the same non-zero difference there is no spread and no interval; the exact test then decides
alone. Otherwise "not shown", with why, and the seeds a difference of the observed size would need (the paired
t-test at power 0.8, at least 6). "Not shown" is not "absent": it says these seeds cannot tell.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtp_bench.analysis import stats
from mtp_bench.analysis.stats import ALPHA, MIN_SEEDS_EXACT, SeedComparison

RULE = (f"shown = exact permutation p < {ALPHA:g} over seeds and the 95% t-interval excludes 0 "
        f"(≥ {MIN_SEEDS_EXACT} seeds needed)")


@dataclass(frozen=True)
class Decision:
    shown: bool
    reason: str  # why not shown ("" when shown)

    @property
    def text(self) -> str:
        return "shown" if self.shown else f"not shown ({self.reason})"


def seeds_needed_text(paired: SeedComparison) -> str:
    """'a difference this size needs ~N seeds' (N at least MIN_SEEDS_EXACT) or '' without a power estimate."""
    power = paired.power
    if power is None or paired.delta == 0:
        return ""
    if power.seeds_needed is None:
        return f"a difference this size needs more than {stats.MAX_SEEDS_SEARCHED} seeds"
    return f"a difference this size needs ~{max(power.seeds_needed, MIN_SEEDS_EXACT)} seeds"


def decide(paired: SeedComparison, alpha: float = ALPHA) -> Decision:
    """The verdict on one method-versus-baseline comparison over seeds (the rule is in the module docstring)."""
    n, needed = paired.n, seeds_needed_text(paired)
    if n < 3:
        seeds = "1 seed" if n == 1 else f"{n} seeds"
        return Decision(False, f"{seeds} cannot show a difference; run ≥ {MIN_SEEDS_EXACT}"
                        + (f"; {needed}" if needed else ""))
    if paired.wins + paired.losses == 0:
        return Decision(False, "every seed tied")
    if n < MIN_SEEDS_EXACT:
        floor = stats.smallest_exact_p(n)
        return Decision(False, f"with {n} seeds the exact test cannot reach p < {alpha:g} (smallest possible p "
                        f"{floor:.3g}); run ≥ {MIN_SEEDS_EXACT}" + (f"; {needed}" if needed else ""))
    exact = paired.p_permutation < alpha
    excludes = paired.has_ci and (paired.low > 0 or paired.high < 0)
    if exact and (excludes or paired.note == stats.SAME_DIFFERENCE):
        return Decision(True, "")
    reasons = ([] if exact else [f"exact p ≥ {alpha:g}"]) + ([] if excludes else ["the interval includes 0"])
    if needed and (paired.power is None or paired.power.seeds_needed is None or paired.power.seeds_needed > n):
        reasons.append(needed)
    return Decision(False, "; ".join(reasons))
