"""The tests the live comparison rests on: Mann-Whitney U, an exact binomial tail and a two-proportion
z-test, one-sided. Pure Python (the operator image carries no scipy: ~40 MB for three formulas).

Mann-Whitney U uses the normal approximation with the tie correction and the 0.5 continuity correction,
as `scipy.stats.mannwhitneyu(..., method="asymptotic")` does; the unit tests hold the two to the same
p-values on fixed samples. The live comparison judges at least 20 requests a side, where the
approximation is accurate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RankTest:
    """Mann-Whitney U of sample x against sample y."""

    u: float
    """U of x: the number of pairs (x_i, y_j) with x_i > y_j, ties counting half."""
    p_greater: float
    """One-sided p-value of "x tends to be greater than y"."""
    p_less: float
    """One-sided p-value of "x tends to be less than y"."""
    superiority: float
    """U / (n_x n_y) = P(x > y) + P(x = y) / 2 for a random pair (the common-language effect size):
    0.5 when neither tends to be greater."""


def mann_whitney(x: Sequence[float], y: Sequence[float]) -> RankTest:
    """Mann-Whitney U test of x against y (both non-empty)."""
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples must be non-empty")
    pooled = sorted([(value, 0) for value in x] + [(value, 1) for value in y])
    rank_sum_x = 0.0
    tie_term = 0.0
    index = 0
    while index < len(pooled):
        end = index
        while end + 1 < len(pooled) and pooled[end + 1][0] == pooled[index][0]:
            end += 1
        ties = end - index + 1
        average_rank = (index + end) / 2 + 1
        rank_sum_x += average_rank * sum(1 for k in range(index, end + 1) if pooled[k][1] == 0)
        tie_term += ties**3 - ties
        index = end + 1
    u = rank_sum_x - n1 * (n1 + 1) / 2
    n = n1 + n2
    mean = n1 * n2 / 2
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:  # every value the same: no evidence either way
        return RankTest(u=u, p_greater=1.0, p_less=1.0, superiority=0.5)
    sd = math.sqrt(variance)
    return RankTest(
        u=u,
        p_greater=_normal_sf((u - mean - 0.5) / sd),
        p_less=_normal_sf((n1 * n2 - u - mean - 0.5) / sd),
        superiority=u / (n1 * n2),
    )


def binomial_p_at_least(successes: int, trials: int, rate: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, rate): how surprising that many errors are if the
    true error rate were `rate`."""
    if successes <= 0:
        return 1.0
    if rate <= 0:
        return 0.0
    if rate >= 1:
        return 1.0
    log_rate, log_rest = math.log(rate), math.log1p(-rate)
    log_n = math.lgamma(trials + 1)
    terms = [
        log_n - math.lgamma(k + 1) - math.lgamma(trials - k + 1) + k * log_rate + (trials - k) * log_rest
        for k in range(successes, trials + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def two_proportion_p_greater(errors_a: int, trials_a: int, errors_b: int, trials_b: int) -> float:
    """One-sided p-value of "a's rate is greater than b's" (pooled two-proportion z-test)."""
    if trials_a == 0 or trials_b == 0:
        return 1.0
    pooled = (errors_a + errors_b) / (trials_a + trials_b)
    variance = pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b)
    if variance <= 0:  # no errors at all, or nothing but errors: no difference to see
        return 1.0
    return _normal_sf((errors_a / trials_a - errors_b / trials_b) / math.sqrt(variance))


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))
