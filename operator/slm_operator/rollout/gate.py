"""The quality gate: golden prompts, canary vs stable, before any user traffic. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from slm_operator.api.models import Expectation, PromptResult, ValidationResult, ValidationSpec
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
    also p95 latency and p95 TTFT against maxLatencyRatio / maxTtftRatio times the baseline's. A golden
    prompt without an outcome fails ("no answer"). No golden prompts: passes, with a note.
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
        failures += _ratio_failures(
            "latency",
            [o.latency_ms for o in run.outcomes],
            [o.latency_ms for o in run.baseline],
            spec.max_latency_ratio,
        )
        failures += _ratio_failures(
            "TTFT", [o.ttft_ms for o in run.outcomes], [o.ttft_ms for o in run.baseline], spec.max_ttft_ratio
        )
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


def _ratio_failures(
    what: str, canary: Sequence[float | None], baseline: Sequence[float | None], limit: float
) -> list[str]:
    canary_values = [v for v in canary if v is not None]
    baseline_values = [v for v in baseline if v is not None]
    if not canary_values or not baseline_values:
        return []
    canary_p95, stable_p95 = percentile(canary_values, 95), percentile(baseline_values, 95)
    if stable_p95 <= 0:
        return []
    ratio = canary_p95 / stable_p95
    if ratio > limit:
        return [f"p95 {what} {canary_p95:.0f} ms is {ratio:.2f}x the stable's {stable_p95:.0f} ms (max {limit:g}x)"]
    return []
