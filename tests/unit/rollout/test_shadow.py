"""The shadow phase: its verdict on fixed router counts (`rollout.shadow.judge_shadow`), and its place in
the state machine (`decide`) between validation and the first traffic step, reached through `decide`
itself from the named states of tests/unit/rollout/states.py."""

from __future__ import annotations

from typing import Any

import pytest

from slm_operator.api.models import Phase, ShadowDisagreement, ShadowSpec, SLMDeploymentStatus
from slm_operator.api.validation import InvalidSpecError, parse_deployment
from slm_operator.builder.serve_config import build_serve_config, build_shadow_config
from slm_operator.rollout.actions import ObserveShadow, RunValidation
from slm_operator.rollout.decide import Decision, decide
from slm_operator.rollout.shadow import ShadowWindow, judge_shadow
from tests.unit.rollout import states
from tests.unit.rollout.helpers import REV, SETTINGS, at, conditions, events, observe, spec, validation

A, B = REV["a"], REV["b"]
SHADOW: dict[str, Any] = {"minPairs": 20, "minAgreement": 0.9, "maxLatencyRatio": 2.0, "timeoutSeconds": 300}
SINCE = "2026-11-01T12:00:20Z"  # t=20, when validation passes
WRONG = ShadowDisagreement(prompt="What is the capital of France?", stable=" Paris", canary=" Madrid", distance=0.8)


def window(pairs: int, agreed: int, *, canary_ms: float = 100, errors: int = 0, **extra: Any) -> ShadowWindow:
    """`pairs` compared pairs at 100 ms for the stable and `canary_ms` for the canary."""
    return ShadowWindow(
        revision=B,
        epoch=SINCE,
        copies=pairs + errors,
        completed=pairs + errors,
        pairs=pairs,
        agreed=agreed,
        canary_errors=errors,
        latency_ms=tuple((100.0, canary_ms) for _ in range(pairs)),
        **extra,
    )


def judge(w: ShadowWindow, elapsed_s: float = 60, **limits: Any) -> tuple[str, str | None, bool, str]:
    verdict = judge_shadow(
        ShadowSpec.model_validate(SHADOW | limits), w, since=SINCE, now="2026-11-01T12:01:20Z", elapsed_s=elapsed_s
    )
    return verdict.result.outcome, verdict.failure, verdict.advance, verdict.result.reason


@pytest.mark.parametrize(
    ("w", "elapsed", "limits", "expected"),
    [
        (window(5, 5), 60, {}, ("Inconclusive", None, False, "5 of 20 pairs so far (0 skipped)")),
        (window(20, 19), 60, {}, ("Pass", None, True, "normalized agreement 0.95 over 20 pairs, latency 1.00x")),
        (window(20, 17), 60, {}, ("Fail", "ShadowDisagreement", False, "agreement 0.85 (17/20 pairs) < minAgreement")),
        # Three wrong answers of the first five: 90 % of 20 is out of reach already.
        (window(5, 2), 60, {}, ("Fail", "ShadowDisagreement", False, "< minAgreement 0.90 even at 20 pairs")),
        (window(5, 3), 60, {}, ("Inconclusive", None, False, "5 of 20")),
        (window(40, 37), 60, {}, ("Pass", None, True, "agreement 0.93 over 40 pairs")),
        (window(20, 20, canary_ms=250), 60, {}, ("Fail", "ShadowLatency", False, "2.50x the stable's")),
        (window(10, 10, canary_ms=250), 60, {}, ("Inconclusive", None, False, "10 of 20")),  # latency at minPairs
        (window(10, 10, errors=2), 60, {"maxErrorRate": 0.05}, ("Fail", "ShadowErrors", False, "2 of 12 copies")),
        (window(5, 5), 300, {}, ("Fail", "ShadowTimeout", False, "only 5 of 20 pairs within timeoutSeconds 300")),
        (window(5, 5), 300, {"onTimeout": "Proceed"}, ("Inconclusive", None, True, "proceeding (onTimeout Proceed)")),
        (window(20, 20), 300, {}, ("Pass", None, True, "over 20 pairs")),  # enough pairs: no timeout
    ],
)
def test_judge_shadow(w: ShadowWindow, elapsed: float, limits: dict[str, Any], expected: tuple[Any, ...]) -> None:
    outcome, failure, advance, reason = judge(w, elapsed, **limits)
    assert (outcome, failure, advance) == expected[:3], reason
    assert expected[3] in reason, reason


def test_error_rate_is_judged_against_min_pairs_copies_until_there_are_more() -> None:
    # maxErrorRate 0.02 x max(20, 21 copies) = 0.42: one error already exceeds it.
    assert judge(window(20, 20, errors=1))[1] == "ShadowErrors"
    assert judge(window(60, 60, errors=1))[:2] == ("Pass", None)  # 1 of 61 copies


def test_result_figures_for_status() -> None:
    verdict = judge_shadow(
        ShadowSpec.model_validate(SHADOW),
        ShadowWindow(
            revision=B,
            epoch=SINCE,
            copies=25,
            completed=24,
            pairs=22,
            agreed=20,
            canary_errors=0,
            stable_errors=2,
            skipped=7,
            latency_ms=((100.0, 150.0), (200.0, 220.0), (50.0, 40.0)),
            worst=(WRONG,),
        ),
        since=SINCE,
        now="2026-11-01T12:01:20Z",
        elapsed_s=60,
    )
    result = verdict.result
    assert (result.pairs, result.agreed, result.agreement, result.skipped, result.stable_errors) == (
        22,
        20,
        0.9091,
        7,
        2,
    )
    assert (result.latency_ratio, result.stable_median_ms, result.canary_median_ms) == (1.1, 100.0, 150.0)
    assert result.worst == [WRONG] and result.outcome == "Pass"


# ---------------------------------------------------------------- in the state machine


def _decide(
    given: SLMDeploymentStatus,
    t: float,
    seen: ShadowWindow | None = None,
    shadow_spec: dict[str, Any] | None = SHADOW,
    **observed: Any,
) -> Decision:
    """One pass at `t` with the router's shadow counts `seen`, under a spec with `shadow_spec`."""
    rollout = {"shadow": shadow_spec} if shadow_spec is not None else {}
    seen_by = observe(given, shadow=seen, **observed)
    return decide(spec("b", **rollout), given, seen_by, generation=2, now=at(t), settings=SETTINGS)


def shadowing() -> SLMDeploymentStatus:
    """b validated at t=20 with a shadow phase: shadowed at 0 %, not stepped."""
    return _decide(states.started(), 20, validation=validation(B, A)).status


def test_validation_pass_enters_the_shadow_phase_at_zero_percent() -> None:
    decision = _decide(states.started(), 20, validation=validation(B, A))
    status = decision.status
    assert status.phase is Phase.SHADOWING and status.rollout is not None
    assert status.rollout.step == -1 and status.rollout.shadow_started_at == SINCE
    assert [(r.name, r.weight) for r in status.revisions] == [(A, 100), (B, 0)]
    assert events(decision) == ["ValidationPassed", "ShadowStarted"]
    assert [a for a in decision.actions if isinstance(a, ObserveShadow)] == [ObserveShadow(B, SINCE)]
    assert conditions(status)["Progressing"] == ("True", "ShadowStarted")
    # The router's config names the canary from now on, with the phase's start as its epoch.
    shadow = build_shadow_config(spec("b", shadow=SHADOW), status)
    assert shadow is not None and (shadow.revision, shadow.epoch, shadow.fraction) == (B, SINCE, 0.2)
    router = build_serve_config(spec("b", shadow=SHADOW), status).applications[0].deployments[0].user_config
    assert router is not None and router["shadow"]["revision"] == B
    assert build_shadow_config(spec("b"), status) is None  # no shadow in the spec: no copies


def test_without_a_shadow_spec_validation_goes_straight_to_the_first_step() -> None:
    status = _decide(states.started(), 20, shadow_spec=None, validation=validation(B, A)).status
    assert status.phase is Phase.PROGRESSING and status.rollout is not None and status.rollout.step == 0


def test_shadow_phase_waits_for_the_routers_pairs_of_this_phase() -> None:
    given = shadowing()
    for seen in (None, ShadowWindow(revision=B, epoch="2026-11-01T11:00:00Z")):
        decision = _decide(given, 30, seen)
        assert decision.status.phase is Phase.SHADOWING, decision.status.message
        assert [a for a in decision.actions if not isinstance(a, RunValidation)] == [ObserveShadow(B, SINCE)]
        assert events(decision) == [] and "waiting for the router's pairs" in decision.status.message


def test_pairs_so_far_are_in_status_while_the_phase_waits() -> None:
    decision = _decide(shadowing(), 30, seen=window(5, 5))
    status = decision.status
    assert status.phase is Phase.SHADOWING and status.last_shadow is not None
    assert (status.last_shadow.pairs, status.last_shadow.outcome) == (5, "Inconclusive")
    assert events(decision) == []


def test_shadow_pass_enters_the_first_traffic_step_and_stops_the_copies() -> None:
    decision = _decide(shadowing(), 60, seen=window(20, 20))
    status = decision.status
    assert status.phase is Phase.PROGRESSING and status.rollout is not None
    assert (status.rollout.step, status.rollout.shadow_started_at) == (0, None)
    assert [(r.name, r.weight) for r in status.revisions] == [(A, 80), (B, 20)]
    assert events(decision) == ["ShadowPassed", "TrafficStepStarted"]
    assert status.last_shadow is not None and status.last_shadow.outcome == "Pass"
    assert build_shadow_config(spec("b", shadow=SHADOW), status) is None


def test_disagreeing_canary_is_rolled_back_with_the_worst_answers_in_status() -> None:
    decision = _decide(shadowing(), 40, seen=window(6, 1, worst=(WRONG,)))
    status = decision.status
    assert status.phase is Phase.DEGRADED and status.canary_revision is None
    assert [(r.name, r.weight) for r in status.revisions] == [(A, 100)]  # at 0 % all along: removed at once
    assert events(decision) == ["ShadowDisagreement", "RolledBack"]
    assert conditions(status)["CanaryValidated"] == ("False", "ShadowDisagreement")
    assert conditions(status)["Degraded"] == ("True", "RolledBack")
    assert status.last_shadow is not None and status.last_shadow.worst == [WRONG]
    assert "shadow phase: normalized agreement 0.17" in status.message


def test_disagreement_with_auto_rollback_off_holds_and_resume_validates_again() -> None:
    held = decide(
        spec("b", shadow=SHADOW, autoRollback=False),
        shadowing(),
        observe(shadowing(), shadow=window(6, 1)),
        generation=2,
        now=at(40),
        settings=SETTINGS,
    ).status
    assert held.phase is Phase.DEGRADED and held.rollout is not None
    assert held.rollout.paused and held.rollout.shadow_started_at is None
    resumed = decide(
        spec("b", shadow=SHADOW, autoRollback=False),
        held,
        observe(held, command="resume"),
        generation=2,
        now=at(50),
        settings=SETTINGS,
    )
    assert resumed.status.phase is Phase.VALIDATING
    assert RunValidation(B, A) in resumed.actions


def test_timeout_rolls_back_or_proceeds_per_spec() -> None:
    few = window(3, 3)
    failed = _decide(shadowing(), 20 + 300, few)
    assert failed.status.phase is Phase.DEGRADED and "ShadowTimeout" in events(failed)
    # No read of this phase at all by the timeout: judged on nothing.
    silent = _decide(shadowing(), 20 + 300)
    assert silent.status.phase is Phase.DEGRADED and "only 0 of 20 pairs" in silent.status.message
    proceeded = _decide(shadowing(), 20 + 300, few, SHADOW | {"onTimeout": "Proceed"})
    assert proceeded.status.phase is Phase.PROGRESSING
    assert events(proceeded) == ["TrafficStepStarted"]


def test_paused_shadow_phase_still_fails_on_evidence_but_neither_passes_nor_times_out() -> None:
    paused = _decide(shadowing(), 30, command="pause").status
    assert paused.phase is Phase.PAUSED
    waiting = _decide(paused, 20 + 1000, seen=window(20, 20))
    assert waiting.status.phase is Phase.PAUSED and "rollout paused" in waiting.status.message
    failing = _decide(paused, 40, seen=window(6, 1))
    assert failing.status.phase is Phase.DEGRADED


def test_the_same_input_gives_the_same_decision() -> None:
    given = shadowing()
    assert _decide(given, 40, seen=window(6, 1)) == _decide(given, 40, seen=window(6, 1))


def test_expectations_comparison_needs_golden_prompts_and_names_the_field() -> None:
    document = {
        "apiVersion": "slm.dev/v1alpha1",
        "kind": "SLMDeployment",
        "metadata": {"name": "x"},
        "spec": {
            "model": {"source": "tiny://good"},
            "rollout": {"shadow": {"comparison": "expectations"}},
        },
    }
    with pytest.raises(InvalidSpecError, match=r"spec\.rollout\.shadow\.comparison"):
        parse_deployment(document)
    bad = {"spec": document["spec"] | {"rollout": {"shadow": {"fraction": 0}}}}
    with pytest.raises(InvalidSpecError, match=r"spec\.rollout\.shadow\.fraction"):
        parse_deployment(document | bad)
