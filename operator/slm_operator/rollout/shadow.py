"""The shadow phase's verdict: the router's pairs of answers (user's revision vs the shadowed canary) in,
Pass / Fail / Inconclusive out. Pure.

The router (`slm_serving.shadow`) copies a share of live user requests to the canary at 0 % and counts,
since the phase began: pairs compared and those that agreed, the canary's failed copies, the latency of
both answers of each pair, and the most different answers. Checks:

* **agreement** — Fail once the disagreements are more than `1 - minAgreement` of `max(minPairs, pairs)`:
  at `minPairs` pairs that is "agreement below minAgreement", and before it, that no run of agreeing
  pairs could bring it back (a canary that answers wrongly fails after a handful of pairs).
* **errors** — the same rule for the canary's failed copies against `maxErrorRate` of the copies.
* **latency** — at `minPairs` pairs, the median over the pairs of canary latency / stable latency (each
  pair is the same request at the same moment, so load and prompt length cancel out) may be at most
  `maxLatencyRatio`.

Pass: `minPairs` pairs and no check failed. Otherwise Inconclusive until `timeoutSeconds`, then
`onTimeout` decides: Fail, or Proceed to the traffic steps on what was seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from slm_operator.api.models import ShadowDisagreement, ShadowResult, ShadowSpec
from slm_operator.rollout.stats import median

SHADOW_DISAGREEMENT = "ShadowDisagreement"
SHADOW_ERRORS = "ShadowErrors"
SHADOW_LATENCY = "ShadowLatency"
SHADOW_TIMEOUT = "ShadowTimeout"
_EPSILON = 1e-9


@dataclass(frozen=True)
class ShadowWindow:
    """One read of the router's shadow counts (`GET /slm/shadow`) for one phase."""

    revision: str
    epoch: str
    """The phase it counts (`status.rollout.shadowStartedAt`)."""
    copies: int = 0
    completed: int = 0
    pairs: int = 0
    agreed: int = 0
    canary_errors: int = 0
    stable_errors: int = 0
    skipped: int = 0
    latency_ms: tuple[tuple[float, float], ...] = ()
    """(stable, canary) per compared pair, the most recent the router keeps."""
    worst: tuple[ShadowDisagreement, ...] = ()


@dataclass(frozen=True)
class ShadowVerdict:
    result: ShadowResult
    failure: str | None = None
    """The failed check's reason (`SHADOW_*`): roll back."""
    advance: bool = False
    """On to the traffic steps: passed, or timed out with onTimeout Proceed."""


def judge_shadow(spec: ShadowSpec, window: ShadowWindow, *, since: str, now: str, elapsed_s: float) -> ShadowVerdict:
    """The phase's verdict on `window`, `elapsed_s` after it began (pass 0 while paused: no timeout)."""
    ratios = [canary / stable for stable, canary in window.latency_ms if stable > 0]
    latency_ratio = round(median(ratios), 3) if ratios else None
    base = ShadowResult(
        revision=window.revision,
        since=since,
        time=now,
        outcome="Inconclusive",
        comparison=spec.comparison,
        copies=window.copies,
        pairs=window.pairs,
        agreed=window.agreed,
        agreement=round(window.agreed / window.pairs, 4) if window.pairs else None,
        canary_errors=window.canary_errors,
        stable_errors=window.stable_errors,
        error_rate=round(window.canary_errors / window.completed, 4) if window.completed else None,
        skipped=window.skipped,
        latency_ratio=latency_ratio,
        stable_median_ms=round(median([s for s, _ in window.latency_ms]), 1) if window.latency_ms else None,
        canary_median_ms=round(median([c for _, c in window.latency_ms]), 1) if window.latency_ms else None,
        worst=list(window.worst),
    )
    enough = window.pairs >= spec.min_pairs
    disagreements = window.pairs - window.agreed
    failures: list[tuple[str, str]] = []
    if disagreements > (1 - spec.min_agreement) * max(spec.min_pairs, window.pairs) + _EPSILON:
        agreement = window.agreed / window.pairs
        failures.append(
            (
                SHADOW_DISAGREEMENT,
                f"{spec.comparison} agreement {agreement:.2f} ({window.agreed}/{window.pairs} pairs) "
                f"< minAgreement {spec.min_agreement:.2f}" + ("" if enough else f" even at {spec.min_pairs} pairs"),
            )
        )
    if window.canary_errors > spec.max_error_rate * max(spec.min_pairs, window.completed) + _EPSILON:
        failures.append(
            (
                SHADOW_ERRORS,
                f"canary failed {window.canary_errors} of {window.completed} copies "
                f"(maxErrorRate {spec.max_error_rate:.2f})",
            )
        )
    if enough and latency_ratio is not None and latency_ratio > spec.max_latency_ratio:
        failures.append(
            (
                SHADOW_LATENCY,
                f"canary latency is {latency_ratio:.2f}x the stable's on the same requests (median of "
                f"{len(ratios)} pairs; max {spec.max_latency_ratio:g}x)",
            )
        )
    if failures:
        reason = "; ".join(text for _, text in failures)
        return ShadowVerdict(base.model_copy(update={"outcome": "Fail", "reason": reason}), failure=failures[0][0])
    if enough:
        agreement = window.agreed / window.pairs
        reason = f"{spec.comparison} agreement {agreement:.2f} over {window.pairs} pairs" + (
            f", latency {latency_ratio:.2f}x the stable's" if latency_ratio is not None else ""
        )
        return ShadowVerdict(base.model_copy(update={"outcome": "Pass", "reason": reason}), advance=True)
    waiting = f"{window.pairs} of {spec.min_pairs} pairs so far ({window.skipped} skipped)"
    if elapsed_s < spec.timeout_seconds:
        return ShadowVerdict(base.model_copy(update={"reason": waiting}))
    timed_out = f"only {window.pairs} of {spec.min_pairs} pairs within timeoutSeconds {spec.timeout_seconds}"
    if spec.on_timeout == "Proceed":
        proceeding = base.model_copy(update={"reason": f"{timed_out}: proceeding (onTimeout Proceed)"})
        return ShadowVerdict(proceeding, advance=True)
    return ShadowVerdict(base.model_copy(update={"outcome": "Fail", "reason": timed_out}), failure=SHADOW_TIMEOUT)
