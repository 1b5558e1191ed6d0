"""The live comparison at a traffic step: the canary's recent requests against the stable's. Pure.

The inputs are per-request samples from the router's window (`slm_serving.samples`), not histogram
buckets, so each check is a statistical test rather than a ratio of two noisy p95s:

* **latency, TTFT** — Mann-Whitney U of the canary's latencies against the stable's *scaled by the
  allowed ratio* (maxLatencyRatio, maxTtftRatio): the canary fails when it is slower than the allowed
  ratio times the stable with one-sided p < alpha, and passes when it is faster than that with p < alpha. The
  effect size in status is the ratio of the medians (and each side's p95); the test compares whole
  distributions, so a slowdown of the tail alone moves it less than one of every request.
* **errors** — the canary fails when its error rate is above maxErrorRate (exact binomial tail, p < alpha)
  and, when the stable served beside it, also above the stable's (pooled two-proportion z-test, p < alpha):
  errors the stable shares are not the canary's doing.

Nothing is judged below `min_requests` canary requests. A latency check needs `min_requests` samples
on each side. While the stable serves beside the canary (its weight above 0, requests in the window), a side
short of that is **Inconclusive**, never a pass: a canary is not promoted on a comparison that was not made,
and the step waits for more traffic, bounded by the step's `maxWaitSeconds`. The check is NotCompared, and
the canary judged on its own (errors against maxErrorRate), only where no comparison can come: the stable
gets no traffic (the step at weight 100, or no stable request since the step began), neither side has any
sample of the metric (nothing streamed: no TTFT), or a short side already answered `decisive_requests`
requests (its traffic mix has too few streamed requests to ever compare TTFT). The error check likewise waits
while the canary's errors are above maxErrorRate but the stable beside it has too few requests to tell
whether they are the canary's doing.
A latency check still inconclusive after `decisive_requests` canary samples passes: a canary is rolled
back only on evidence. Each pass tests again on more samples; alpha is kept small (0.01) because
repeated looks at a canary near the limit add up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from slm_operator.api.models import LiveCheck, ValidationSpec
from slm_operator.rollout.gate import percentile
from slm_operator.rollout.stats import binomial_p_at_least, mann_whitney, median, two_proportion_p_greater

Outcome = Literal["Pass", "Fail", "Inconclusive"]


@dataclass(frozen=True)
class RevisionSamples:
    """One revision's requests since the traffic step began, as the router's window holds them."""

    requests: int = 0
    """Answered requests, errors included."""
    errors: int = 0
    """Answers with HTTP status 400 or more."""
    latency_ms: tuple[float, ...] = ()
    """End-to-end latency of each successful request (the most recent ones the window holds)."""
    ttft_ms: tuple[float, ...] = ()
    """Time to first token of each successful streamed request."""
    prompt_tokens: int = 0
    """Prompt tokens of the successful requests (counted exactly, not sampled)."""
    completion_tokens: int = 0
    """Generated tokens of the successful requests (counted exactly)."""


@dataclass(frozen=True)
class LiveSamples:
    canary_revision: str
    canary: RevisionSamples
    stable: RevisionSamples


@dataclass(frozen=True)
class LiveLimits:
    """How much evidence the comparison asks for (operator-wide, see `RolloutSettings`)."""

    min_requests: int
    """Canary requests before anything is judged; also the fewest latency samples a side a test uses."""
    decisive_requests: int
    """Canary latency samples after which an inconclusive latency check passes."""
    significance: float
    """alpha: the one-sided p-value below which a check passes or fails."""


@dataclass(frozen=True)
class LiveVerdict:
    outcome: Outcome
    checks: tuple[LiveCheck, ...]
    reason: str

    @property
    def breaches(self) -> tuple[str, ...]:
        """The reasons of the failed checks; any one rolls back."""
        return tuple(c.reason for c in self.checks if c.outcome == "Fail")


def compare_live(
    spec: ValidationSpec, live: LiveSamples, limits: LiveLimits, *, stable_serves: bool = True
) -> LiveVerdict:
    """Canary vs stable at a traffic step: Fail if any check fails, else Inconclusive (the step waits for
    more traffic) if any is, else Pass (every check passed, or cannot be compared; see the module doc).

    `stable_serves`: the stable has a share of this step's traffic (canary weight below 100). Without
    one, the stable's few requests in the window (answers that began before the step) are not waited on.
    """
    canary, stable = live.canary, live.stable
    minimum = max(1, limits.min_requests)
    if canary.requests < minimum:
        reason = f"{canary.requests} of {minimum} canary requests so far"
        return LiveVerdict("Inconclusive", (), reason)
    stable_beside = stable_serves and stable.requests > 0
    sides = _Sides(canary.requests, stable.requests, stable_beside)
    checks = (
        _latency_check("latency", canary.latency_ms, stable.latency_ms, spec.max_latency_ratio, sides, limits),
        _latency_check("ttft", canary.ttft_ms, stable.ttft_ms, spec.max_ttft_ratio, sides, limits),
        _error_check(canary, stable, spec.max_error_rate, stable_beside, limits),
    )
    outcomes = {c.outcome for c in checks}
    outcome: Outcome = "Fail" if "Fail" in outcomes else "Inconclusive" if "Inconclusive" in outcomes else "Pass"
    shown = [c for c in checks if c.outcome == outcome] if outcome != "Pass" else list(checks)
    return LiveVerdict(outcome, checks, "; ".join(c.reason for c in shown))


_TITLES = {"latency": "latency", "ttft": "TTFT"}


@dataclass(frozen=True)
class _Sides:
    """What a latency check needs to know beyond its samples: each side's requests, and whether the stable
    serves beside the canary (so that waiting can bring it more samples)."""

    canary_requests: int
    stable_requests: int
    stable_beside: bool


def _latency_check(
    metric: Literal["latency", "ttft"],
    canary: Sequence[float],
    stable: Sequence[float],
    allowed: float,
    sides: _Sides,
    limits: LiveLimits,
) -> LiveCheck:
    title = _TITLES[metric]
    minimum = max(1, limits.min_requests)
    base = LiveCheck(
        metric=metric,
        outcome="NotCompared",
        canary_samples=len(canary),
        stable_samples=len(stable),
        allowed=allowed,
        canary_median_ms=_rounded(median(canary)) if canary else None,
        stable_median_ms=_rounded(median(stable)) if stable else None,
        canary_p95_ms=_rounded(percentile(canary, 95)) if canary else None,
        stable_p95_ms=_rounded(percentile(stable, 95)) if stable else None,
    )
    if len(canary) < minimum or len(stable) < minimum:
        return base.model_copy(update=_short_of_samples(title, len(canary), len(stable), sides, limits))
    test = mann_whitney(canary, [allowed * value for value in stable])
    canary_median, stable_median = median(canary), median(stable)
    ratio = canary_median / stable_median if stable_median > 0 else None
    shown = f"{ratio:.2f}x" if ratio is not None else "n/a"
    said = (
        f"{title} median {canary_median:.0f} ms is {shown} the stable's {stable_median:.0f} ms "
        f"(max {allowed:g}x; n = {len(canary)}/{len(stable)})"
    )
    alpha = limits.significance
    if test.p_greater < alpha:
        outcome: Literal["Pass", "Fail", "Inconclusive"] = "Fail"
        reason = f"{said}: slower than allowed, p = {test.p_greater:.2g}"
    elif test.p_less < alpha:
        outcome, reason = "Pass", f"{said}: within the allowed ratio, p = {test.p_less:.2g}"
    elif len(canary) >= limits.decisive_requests:
        outcome, reason = "Pass", f"{said}: not shown slower than allowed after {len(canary)} samples"
    else:
        outcome, reason = "Inconclusive", f"{said}: not yet conclusive (p = {test.p_greater:.2g})"
    effect = _rounded(ratio, 3) if ratio is not None else None
    update = {"outcome": outcome, "reason": reason, "effect": effect, "p_value": _rounded(test.p_greater, 4)}
    return base.model_copy(update=update)


def _short_of_samples(title: str, canary: int, stable: int, sides: _Sides, limits: LiveLimits) -> dict[str, str]:
    """A latency check with fewer than `min_requests` samples on a side: wait (Inconclusive) while more
    can come; NotCompared only where no comparison can come (see the module doc)."""
    minimum = max(1, limits.min_requests)
    counts = f"{canary} canary and {stable} stable samples (need {minimum} each)"
    if not sides.stable_beside:
        return {
            "outcome": "NotCompared",
            "reason": f"{title} not compared: no stable traffic, the canary judged on its own",
        }
    if canary == 0 and stable == 0:
        return {"outcome": "NotCompared", "reason": f"{title} not compared: no samples on either side"}
    sides_short = [
        requests for n, requests in ((canary, sides.canary_requests), (stable, sides.stable_requests)) if n < minimum
    ]
    if all(requests >= limits.decisive_requests for requests in sides_short):
        said = f"{title} not compared: {counts} after {limits.decisive_requests} requests or more"
        return {"outcome": "NotCompared", "reason": said}
    return {"outcome": "Inconclusive", "reason": f"{title} not yet conclusive: {counts}"}


def _error_check(
    canary: RevisionSamples, stable: RevisionSamples, allowed: float, stable_beside: bool, limits: LiveLimits
) -> LiveCheck:
    rate = canary.errors / canary.requests
    stable_rate = stable.errors / stable.requests if stable.requests else None
    p_allowed = binomial_p_at_least(canary.errors, canary.requests, allowed)
    minimum = max(1, limits.min_requests)
    beside = stable_beside and stable.requests >= minimum
    p_stable = two_proportion_p_greater(canary.errors, canary.requests, stable.errors, stable.requests)
    alpha = limits.significance
    said = f"live error rate {rate:.3f} ({canary.errors}/{canary.requests})"
    if stable_rate is not None:
        said += f", the stable's {stable_rate:.3f} ({stable.errors}/{stable.requests})"
    above_allowed = p_allowed < alpha
    if above_allowed and stable_beside and not beside:
        outcome: Literal["Pass", "Fail", "Inconclusive"] = "Inconclusive"
        reason = (
            f"{said} > maxErrorRate {allowed:.3f}, not yet conclusive: {stable.requests} of {minimum} stable "
            "requests to tell whether the stable shares them"
        )
    elif above_allowed and (not beside or p_stable < alpha):
        outcome = "Fail"
        reason = f"{said} > maxErrorRate {allowed:.3f} (p = {max(p_allowed, p_stable if beside else 0):.2g})"
    else:
        outcome, reason = "Pass", f"{said}: within maxErrorRate {allowed:.3f} or no worse than the stable's"
    return LiveCheck(
        metric="errors",
        outcome=outcome,
        canary_samples=canary.requests,
        stable_samples=stable.requests,
        canary_error_rate=_rounded(rate, 4),
        stable_error_rate=_rounded(stable_rate, 4) if stable_rate is not None else None,
        effect=_rounded(rate, 4),
        allowed=allowed,
        p_value=_rounded(p_allowed, 4),
        reason=reason,
    )


def _rounded(value: float, digits: int = 1) -> float:
    """Figures for status: stable text, no float noise."""
    return round(value, digits)
