"""The live comparison at a traffic step, as a table of fixed samples: data in, verdict out."""

from __future__ import annotations

import pytest

from slm_operator.api.models import ValidationSpec
from slm_operator.rollout.gate import percentile
from slm_operator.rollout.live import LiveLimits, LiveSamples, RevisionSamples, compare_live
from tests.unit.rollout.helpers import traffic

LIMITS = LiveLimits(min_requests=40, decisive_requests=400, significance=0.01)
SPEC = ValidationSpec(max_latency_ratio=1.5, max_ttft_ratio=1.5, max_error_rate=0.01)
STABLE = traffic(200)
NOISY_GOOD = RevisionSamples(  # the stable's distribution, but 5 of its 60 requests hit a stall (GC, a busy core)
    requests=60, latency_ms=traffic(55).latency_ms + (900.0,) * 5, ttft_ms=traffic(55).ttft_ms + (300.0,) * 5
)
NO_STREAMS = RevisionSamples(requests=100, latency_ms=traffic(100).latency_ms)
FEW_STREAMS = RevisionSamples(requests=400, latency_ms=traffic(400).latency_ms, ttft_ms=traffic(10).ttft_ms)


def live(canary: RevisionSamples, stable: RevisionSamples = STABLE) -> LiveSamples:
    return LiveSamples("canary1", canary, stable)


@pytest.mark.parametrize(
    ("samples", "outcome", "checks", "reason"),
    [
        pytest.param(live(traffic(20)), "Inconclusive", (), "20 of 40 canary requests so far", id="too-few"),
        pytest.param(live(traffic(100)), "Pass", ("Pass", "Pass", "Pass"), "within the allowed ratio", id="same"),
        pytest.param(
            live(NOISY_GOOD), "Pass", ("Pass", "Pass", "Pass"), "latency median 102 ms is 1.02x", id="stalls-in-tail"
        ),
        pytest.param(
            live(traffic(100, latency=200)), "Fail", ("Fail", "Fail", "Pass"), "slower than allowed", id="2x-slower"
        ),
        pytest.param(
            live(traffic(100, latency=200, ttft=20)), "Fail", ("Fail", "Pass", "Pass"), "latency", id="slow-not-ttft"
        ),
        pytest.param(
            live(traffic(100, ttft=60)), "Fail", ("Pass", "Fail", "Pass"), "TTFT median 60 ms is 3.00x", id="ttft"
        ),
        pytest.param(
            live(traffic(100, latency=150)),
            "Inconclusive",
            ("Inconclusive", "Inconclusive", "Pass"),
            "not yet conclusive",
            id="at-the-allowed-ratio-waits",
        ),
        pytest.param(
            live(traffic(400, latency=150)),
            "Pass",
            ("Pass", "Pass", "Pass"),
            "not shown slower than allowed after 400 samples",
            id="at-the-allowed-ratio-decided-by-sample-count",
        ),
        pytest.param(
            live(traffic(100, latency=900), RevisionSamples()),
            "Pass",
            ("NotCompared", "NotCompared", "Pass"),
            "latency not compared: no stable traffic, the canary judged on its own",
            id="no-stable-traffic",
        ),
        pytest.param(
            live(traffic(100), traffic(10)),
            "Inconclusive",
            ("Inconclusive", "Inconclusive", "Pass"),
            "latency not yet conclusive: 100 canary and 10 stable samples (need 40 each)",
            id="stable-short-of-samples-waits",
        ),
        pytest.param(
            live(traffic(100, latency=900), traffic(10)),
            "Inconclusive",
            ("Inconclusive", "Inconclusive", "Pass"),
            "latency not yet conclusive",
            id="slow-canary-beside-a-short-stable-is-not-passed",
        ),
        pytest.param(
            live(NO_STREAMS, NO_STREAMS),
            "Pass",
            ("Pass", "NotCompared", "Pass"),
            "TTFT not compared: no samples on either side",
            id="no-streams-on-either-side",
        ),
        pytest.param(
            live(NO_STREAMS),
            "Inconclusive",
            ("Pass", "Inconclusive", "Pass"),
            "TTFT not yet conclusive: 0 canary and 200 stable samples",
            id="no-canary-streams-yet-waits",
        ),
        pytest.param(
            live(FEW_STREAMS),
            "Pass",
            ("Pass", "NotCompared", "Pass"),
            "TTFT not compared: 10 canary and 200 stable samples (need 40 each) after 400 requests",
            id="few-canary-streams-after-the-decisive-count",
        ),
        pytest.param(
            live(traffic(100), FEW_STREAMS),
            "Pass",
            ("Pass", "NotCompared", "Pass"),
            "TTFT not compared: 100 canary and 10 stable samples",
            id="few-stable-streams-after-the-decisive-count",
        ),
        pytest.param(
            live(traffic(100, errors=10), traffic(10, errors=3)),
            "Inconclusive",
            ("Inconclusive", "Inconclusive", "Inconclusive"),
            "> maxErrorRate 0.010, not yet conclusive: 10 of 40 stable requests",
            id="errors-beside-a-short-stable-wait",
        ),
        pytest.param(
            live(traffic(100, errors=3)),
            "Pass",
            ("Pass", "Pass", "Pass"),
            "0.030 (3/100)",
            id="3-errors-not-significant",
        ),
        pytest.param(
            live(traffic(100, errors=10)), "Fail", ("Pass", "Pass", "Fail"), "> maxErrorRate 0.010", id="10-errors"
        ),
        pytest.param(
            live(traffic(100, errors=10), traffic(200, errors=20)),
            "Pass",
            ("Pass", "Pass", "Pass"),
            "no worse than the stable's",
            id="errors-the-stable-shares",
        ),
        pytest.param(
            live(traffic(100, errors=100)), "Fail", ("Inconclusive", "Inconclusive", "Fail"), "1.000", id="all-errors"
        ),
    ],
)
def test_compare_live(samples: LiveSamples, outcome: str, checks: tuple[str, ...], reason: str) -> None:
    verdict = compare_live(SPEC, samples, LIMITS)
    assert verdict.outcome == outcome, verdict.reason
    assert tuple(c.outcome for c in verdict.checks) == checks, verdict.reason
    assert reason in verdict.reason
    assert compare_live(SPEC, samples, LIMITS) == verdict  # deterministic


@pytest.mark.parametrize(
    ("canary", "stable", "outcome", "reason"),
    [
        pytest.param(traffic(100), traffic(10), "Pass", "no stable traffic, the canary judged on its own", id="good"),
        pytest.param(traffic(100, errors=10), traffic(10, errors=3), "Fail", "> maxErrorRate 0.010 (p = ", id="errs"),
        pytest.param(traffic(100, latency=900), traffic(100), "Fail", "slower than allowed", id="stragglers-enough"),
    ],
)
def test_at_weight_100_the_stables_stragglers_are_not_waited_on(
    canary: RevisionSamples, stable: RevisionSamples, outcome: str, reason: str
) -> None:
    """At weight 100 the stable gets no new requests: the few that began before the step are compared
    with when there are enough of them, and never waited on."""
    verdict = compare_live(SPEC, live(canary, stable), LIMITS, stable_serves=False)
    assert verdict.outcome == outcome, verdict.reason
    assert reason in verdict.reason


def test_stalls_in_the_tail_break_a_p95_ratio_but_not_the_rank_test() -> None:
    """The noise that rolled good canaries back: p95 over 1.5x the stable's, distributions alike."""
    p95_ratio = percentile(NOISY_GOOD.latency_ms, 95) / percentile(STABLE.latency_ms, 95)
    assert p95_ratio > SPEC.max_latency_ratio
    latency = compare_live(SPEC, live(NOISY_GOOD), LIMITS).checks[0]
    assert latency.outcome == "Pass"
    assert (latency.canary_p95_ms, latency.stable_p95_ms, latency.effect) == (900.0, 118.0, 1.019)


def test_maxerrorrate_zero_without_a_stable_beside_fails_on_one_error() -> None:
    verdict = compare_live(ValidationSpec(max_error_rate=0), live(traffic(100, errors=1), RevisionSamples()), LIMITS)
    assert verdict.outcome == "Fail" and "live error rate 0.010 (1/100)" in verdict.breaches[0]


def test_figures_in_the_checks() -> None:
    latency, ttft, errors = compare_live(SPEC, live(traffic(100, latency=200, ttft=20)), LIMITS).checks
    assert (latency.metric, latency.canary_samples, latency.stable_samples) == ("latency", 100, 200)
    assert (latency.canary_median_ms, latency.stable_median_ms, latency.effect, latency.allowed) == (200, 100, 2, 1.5)
    assert latency.p_value is not None and latency.p_value < 0.01
    assert ttft.metric == "ttft" and ttft.outcome == "Pass"
    assert (errors.canary_error_rate, errors.stable_error_rate, errors.allowed) == (0.0, 0.0, 0.01)
