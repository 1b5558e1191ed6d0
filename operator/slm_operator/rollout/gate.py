"""The quality gate: golden prompts, canary vs stable, before any user traffic. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from slm_operator.api.models import Expectation, PromptResult, ValidationResult, ValidationSpec
from slm_operator.rollout.stats import median
from slm_serving.expectations import check_answer

ANSWER_LIMIT = 200
"""Characters of an answer kept in status (status objects must stay small)."""
NO_PROMPTS_NOTE = "no golden prompts in spec.rollout.validation: passed without checks"


@dataclass(frozen=True)
class PromptOutcome:
    """What one golden prompt got from one revision, as the shell measured it."""

    name: str
    answer: str = ""
    error: str | None = None
    """Transport or HTTP error instead of an answer: the prompt fails and counts as an error."""
    latency_ms: float | None = None
    ttft_ms: float | None = None


@dataclass(frozen=True)
class ValidationRun:
    """The golden prompts sent to `revision` (pinned), and to `baseline_revision` for comparison."""

    revision: str
    outcomes: tuple[PromptOutcome, ...]
    baseline_revision: str | None = None
    baseline: tuple[PromptOutcome, ...] = ()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def evaluate_validation(spec: ValidationSpec, run: ValidationRun, time: str) -> ValidationResult:
    """The gate verdict of one validation run.

    Checks the pass rate against minPassRate and the error rate against maxErrorRate; with a baseline,
    also latency and TTFT against maxLatencyRatio / maxTtftRatio: the median, over the prompts both
    revisions answered, of each prompt's canary / stable ratio (the two are sent right after one
    another, so each pair sees the same background load). A p95 of a few prompts is their slowest one,
    which one stall on a busy machine decides; the median of paired ratios needs most prompts to be
    slower. A golden prompt without an outcome fails ("no answer"). No golden prompts: passes, with a note.
    """
    if not spec.prompts:
        return ValidationResult(revision=run.revision, passed=True, pass_rate=1.0, time=time, reason=NO_PROMPTS_NOTE)
    outcomes = {o.name: o for o in run.outcomes}
    results = [_prompt_result(prompt.name, outcomes.get(prompt.name), prompt.expect) for prompt in spec.prompts]
    pass_rate = sum(r.passed for r in results) / len(results)
    failures: list[str] = []
    if pass_rate < spec.min_pass_rate:
        failed = ", ".join(r.name for r in results if not r.passed)
        failures.append(f"pass rate {pass_rate:.2f} < minPassRate {spec.min_pass_rate:.2f} (failed: {failed})")
    errors = sum(1 for prompt in spec.prompts if (o := outcomes.get(prompt.name)) is None or o.error is not None)
    error_rate = errors / len(spec.prompts)
    if error_rate > spec.max_error_rate:
        failures.append(f"error rate {error_rate:.2f} > maxErrorRate {spec.max_error_rate:.2f}")
    if run.baseline_revision is not None:
        stable = {o.name: o for o in run.baseline}
        pairs = [(o, stable[o.name]) for o in run.outcomes if o.name in stable]
        failures += _paired_ratio_failures(
            "latency", [(c.latency_ms, b.latency_ms) for c, b in pairs], spec.max_latency_ratio
        )
        failures += _paired_ratio_failures("TTFT", [(c.ttft_ms, b.ttft_ms) for c, b in pairs], spec.max_ttft_ratio)
    return ValidationResult(
        revision=run.revision,
        passed=not failures,
        pass_rate=pass_rate,
        time=time,
        reason="; ".join(failures),
        results=results,
    )


def _prompt_result(name: str, outcome: PromptOutcome | None, expect: Expectation) -> PromptResult:
    if outcome is None:
        return PromptResult(name=name, passed=False, reason="no answer")
    if outcome.error is not None:
        return PromptResult(name=name, passed=False, reason=f"error: {outcome.error}"[:ANSWER_LIMIT])
    check = check_answer(outcome.answer, expect)
    return PromptResult(
        name=name,
        passed=check.passed,
        answer=outcome.answer[:ANSWER_LIMIT],
        reason=check.reason,
        latency_ms=outcome.latency_ms,
    )


def _paired_ratio_failures(what: str, pairs: Sequence[tuple[float | None, float | None]], limit: float) -> list[str]:
    """The breach, if any, of the median canary / stable ratio over the (canary, stable) pairs both measured."""
    measured = [(c, b) for c, b in pairs if c is not None and b is not None and b > 0]
    if not measured:
        return []
    ratio = median([c / b for c, b in measured])
    if ratio <= limit:
        return []
    canary_ms, stable_ms = median([c for c, _ in measured]), median([b for _, b in measured])
    return [
        f"{what} is {ratio:.2f}x the stable's on the same prompts (median of {len(measured)} paired ratios; "
        f"medians {canary_ms:.0f} ms and {stable_ms:.0f} ms; max {limit:g}x)"
    ]
