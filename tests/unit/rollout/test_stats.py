"""The statistics of the live comparison, held to scipy 1.16.3's figures on fixed samples.

The expected p-values were computed once with `scipy.stats.mannwhitneyu(x, y, alternative=...,
method="asymptotic")`, `scipy.stats.binom.sf(k - 1, n, p)` and, for the pooled z-test,
`scipy.stats.norm.sf` of its z (scipy is not a dependency of the project).
"""

from __future__ import annotations

import pytest

from slm_operator.rollout.stats import binomial_p_at_least, mann_whitney, median, two_proportion_p_greater

# 30 and 45 rounded log-normal latencies (ties among them), the second ~20 % slower.
X = [133, 161, 153, 94, 97, 119, 116, 159, 192, 121, 87, 100, 166, 152, 112, 175, 118, 143, 246, 109, 165,
     175, 125, 105, 204, 197, 190, 160, 143, 187]  # fmt: skip
Y = [152, 115, 149, 141, 117, 123, 225, 149, 97, 146, 139, 193, 117, 155, 185, 200, 165, 104, 152, 166, 131,
     194, 149, 167, 175, 162, 222, 184, 185, 355, 335, 149, 196, 162, 340, 135, 168, 129, 121, 277, 262, 150,
     149, 344, 254]  # fmt: skip
HEAVY_TIES_X = [1, 2, 2, 3, 3, 3, 4, 5] * 3
HEAVY_TIES_Y = [2, 3, 3, 4, 4, 5, 6, 6] * 3


@pytest.mark.parametrize(
    ("x", "y", "u", "p_greater", "p_less"),
    [
        (X, Y, 485.0, 0.9803360628293014, 0.020186010382260262),
        (HEAVY_TIES_X, HEAVY_TIES_Y, 148.5, 0.9984505783304517, 0.0016589872897178248),
    ],
)
def test_mann_whitney_matches_scipy_asymptotic(
    x: list[float], y: list[float], u: float, p_greater: float, p_less: float
) -> None:
    test = mann_whitney(x, y)
    assert test.u == u
    assert test.p_greater == pytest.approx(p_greater, rel=1e-9)
    assert test.p_less == pytest.approx(p_less, rel=1e-9)
    assert test.superiority == pytest.approx(u / (len(x) * len(y)))


def test_mann_whitney_is_symmetric_and_sees_no_effect_in_identical_samples() -> None:
    forward, backward = mann_whitney(X, Y), mann_whitney(Y, X)
    assert forward.p_greater == pytest.approx(backward.p_less)
    same = mann_whitney(X, X)
    assert same.superiority == 0.5 and same.p_greater > 0.4 and same.p_less > 0.4
    constant = mann_whitney([5.0] * 10, [5.0] * 10)
    assert (constant.p_greater, constant.p_less) == (1.0, 1.0)
    with pytest.raises(ValueError, match="non-empty"):
        mann_whitney([], [1.0])


@pytest.mark.parametrize(
    ("k", "n", "rate", "expected"),
    [
        (3, 40, 0.01, 0.007497363395395947),
        (1, 200, 0.01, 0.866020325142038),
        (0, 10, 0.5, 1.0),
        (1, 10, 0.0, 0.0),  # maxErrorRate 0: any error is impossible under it
        (10, 10, 1.0, 1.0),
    ],
)
def test_binomial_tail(k: int, n: int, rate: float, expected: float) -> None:
    assert binomial_p_at_least(k, n, rate) == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((1, 40), (0, 160), 0.02248051709754614),
        ((3, 40), (0, 160), 0.00024116856420903525),
        ((0, 40), (0, 160), 1.0),  # no errors anywhere: nothing to see
        ((5, 50), (10, 100), 0.5),
        ((1, 0), (0, 10), 1.0),
    ],
)
def test_two_proportion_z_test(a: tuple[int, int], b: tuple[int, int], expected: float) -> None:
    assert two_proportion_p_greater(*a, *b) == pytest.approx(expected, rel=1e-9)


def test_median() -> None:
    assert (median([3, 1, 2]), median([4, 1, 3, 2])) == (2, 2.5)
