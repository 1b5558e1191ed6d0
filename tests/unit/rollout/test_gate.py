"""The validation gate: golden prompts, canary vs stable."""

from __future__ import annotations

from typing import Any

import pytest

from slm_operator.api.models import ValidationSpec
from slm_operator.rollout.gate import (
    NO_PROMPTS_NOTE,
    PromptOutcome,
    ValidationRun,
    evaluate_validation,
    percentile,
)

NOW = "2026-11-01T00:00:00Z"
CAPITALS = {"france": "Paris", "japan": "Tokyo", "peru": "Lima", "norway": "Oslo"}


def spec(**overrides: Any) -> ValidationSpec:
    prompts = [
        {"name": name, "prompt": f"capital of {name}?", "expect": {"contains": [city]}}
        for name, city in CAPITALS.items()
    ]
    return ValidationSpec.model_validate({"prompts": prompts, "minPassRate": 0.75} | overrides)


def outcomes(wrong: int = 0, errors: int = 0, latency: float = 100.0, ttft: float = 20.0) -> tuple[PromptOutcome, ...]:
    """The four prompts: the first `wrong` answered wrongly, the next `errors` failing outright."""
    result = []
    for index, (name, city) in enumerate(CAPITALS.items()):
        if index < wrong:
            result.append(PromptOutcome(name, answer="Madrid", latency_ms=latency, ttft_ms=ttft))
        elif index < wrong + errors:
            result.append(PromptOutcome(name, error="HTTP 503"))
        else:
            result.append(PromptOutcome(name, answer=f"It is {city}.", latency_ms=latency, ttft_ms=ttft))
    return tuple(result)


def run(canary: tuple[PromptOutcome, ...], baseline: tuple[PromptOutcome, ...] | None = None) -> ValidationRun:
    return ValidationRun("canary1", canary, "stable1" if baseline is not None else None, baseline or ())


@pytest.mark.parametrize(
    ("validation", "observed", "passed", "pass_rate", "reason"),
    [
        pytest.param(spec(), run(outcomes()), True, 1.0, "", id="all-pass-no-baseline"),
        pytest.param(spec(), run(outcomes(), outcomes()), True, 1.0, "", id="all-pass-equal-to-baseline"),
        pytest.param(spec(), run(outcomes(wrong=1)), True, 0.75, "", id="pass-rate-at-minimum"),
        pytest.param(
            spec(), run(outcomes(wrong=2)), False, 0.5, "pass rate 0.50 < minPassRate 0.75", id="pass-rate-low"
        ),
        pytest.param(spec(), run(outcomes(wrong=2)), False, 0.5, "failed: france, japan", id="names-failed-prompts"),
        pytest.param(spec(maxErrorRate=0.3), run(outcomes(errors=1)), True, 0.75, "", id="one-error-allowed"),
        pytest.param(spec(), run(outcomes(errors=1)), False, 0.75, "error rate 0.25 > maxErrorRate 0.01", id="error"),
        pytest.param(spec(), run(outcomes()[:3]), False, 0.75, "error rate 0.25", id="missing-outcome-is-an-error"),
        pytest.param(
            spec(),
            run(outcomes(latency=160), outcomes(latency=100)),
            False,
            1.0,
            "latency is 1.60x the stable's on the same prompts (median of 4 paired ratios; medians 160 ms and 100 ms",
            id="latency-ratio-breach",
        ),
        pytest.param(spec(), run(outcomes(latency=150), outcomes(latency=100)), True, 1.0, "", id="latency-at-limit"),
        pytest.param(
            spec(maxTtftRatio=2),
            run(outcomes(ttft=45), outcomes(ttft=20)),
            False,
            1.0,
            "TTFT is 2.25x",
            id="ttft-ratio-breach",
        ),
        pytest.param(spec(), run(outcomes(latency=1000)), True, 1.0, "", id="slow-canary-without-baseline-not-judged"),
        pytest.param(spec(prompts=[]), run(()), True, 1.0, NO_PROMPTS_NOTE, id="no-prompts-pass-with-note"),
    ],
)
def test_evaluate_validation(
    validation: ValidationSpec, observed: ValidationRun, passed: bool, pass_rate: float, reason: str
) -> None:
    result = evaluate_validation(validation, observed, NOW)
    assert (result.revision, result.time, result.passed, result.pass_rate) == ("canary1", NOW, passed, pass_rate)
    assert reason in result.reason
    if reason == "":
        assert result.reason == ""


def with_latencies(latencies: list[float], ttft: float = 20.0) -> tuple[PromptOutcome, ...]:
    """The four prompts answered correctly, with these latencies in order."""
    return tuple(
        PromptOutcome(name, answer=f"It is {city}.", latency_ms=latency, ttft_ms=ttft)
        for (name, city), latency in zip(CAPITALS.items(), latencies, strict=True)
    )


def test_one_stalled_prompt_does_not_fail_the_latency_check() -> None:
    """One prompt of four stalls (a busy core): its ratio is 9x, the others 1x; the median ratio is 1x."""
    result = evaluate_validation(spec(), run(with_latencies([900, 100, 100, 100]), outcomes()), NOW)
    assert result.passed, result.reason


def test_most_prompts_slower_fail_the_latency_check_by_their_median_ratio() -> None:
    """Three of four prompts twice as slow as on the stable: the median of the paired ratios is 2x."""
    result = evaluate_validation(spec(), run(with_latencies([200, 200, 200, 100]), outcomes()), NOW)
    assert not result.passed
    assert result.reason.startswith("latency is 2.00x the stable's on the same prompts (median of 4"), result.reason


def test_latency_ratios_pair_prompts_by_name() -> None:
    """The stable's answers arrive in another order: each canary prompt is compared with the same prompt."""
    canary = with_latencies([100, 200, 300, 400])
    stable = tuple(reversed(with_latencies([100, 200, 300, 400])))
    assert evaluate_validation(spec(), run(canary, stable), NOW).passed


def test_results_list_failing_prompts_with_what_the_model_answered() -> None:
    result = evaluate_validation(spec(), run(outcomes(wrong=1, errors=1)), NOW)
    by_name = {r.name: r for r in result.results}
    assert list(by_name) == list(CAPITALS)
    assert (by_name["france"].passed, by_name["france"].answer) == (False, "Madrid")
    assert "does not contain 'Paris'" in by_name["france"].reason
    assert (by_name["japan"].passed, by_name["japan"].reason) == (False, "error: HTTP 503")
    assert by_name["peru"].passed and by_name["peru"].answer == "It is Lima."


def test_long_answers_are_truncated_in_status() -> None:
    long = (PromptOutcome("france", answer="Paris " * 500),)
    result = evaluate_validation(spec(minPassRate=0.25, maxErrorRate=1), run(long), NOW)
    assert len(result.results[0].answer) == 200


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([5.0], 95, 5.0), ([1, 2, 3, 4], 50, 2), ([float(i) for i in range(1, 101)], 95, 95.0), ([3, 1, 2], 100, 3)],
)
def test_percentile_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected
