"""Every transition of the rollout state machine, as a table.

Each row: a status reached through `decide` itself (tests/unit/rollout/states.py), what the shell
observed, the spec (version a, b or c of examples/tiny.yaml) and time, and what must come out. Every
row also checks determinism (the same input twice gives the same decision: a restart that repeats a
pass lands in the same place) and that the input status was not modified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from slm_operator.api.models import Phase, SLMDeploymentStatus
from slm_operator.rollout.actions import (
    ApplyRevisions,
    ClearCommand,
    ObserveMetrics,
    RecordQuality,
    RunValidation,
)
from slm_operator.rollout.decide import Observation, decide
from slm_operator.rollout.gate import NO_PROMPTS_NOTE, ValidationRun
from slm_operator.rollout.live import LiveSamples
from tests.unit.rollout import states
from tests.unit.rollout.helpers import REV, SETTINGS, at, conditions, events, live, observe, spec, traffic, validation

A, B, C = REV["a"], REV["b"], REV["c"]
TS = {"20": "2026-11-01T12:00:20Z"}


@dataclass(frozen=True)
class Row:
    given: Callable[[], SLMDeploymentStatus | None]
    version: str = "b"
    generation: int = 2
    t: float = 25
    observed: dict[str, Any] = field(default_factory=dict)
    """Overrides of `observe(given)` (everything runs, routes settled)."""
    rollout: dict[str, Any] = field(default_factory=dict)
    """Overrides of spec.rollout."""
    phase: Phase | None = None
    stable: str | None = None
    canary: str | None = "unchecked"
    weights: tuple[tuple[str, int], ...] | None = None
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)
    acts: tuple[object, ...] | None = None
    """Every action except events, exactly, in order."""
    events: tuple[str, ...] | None = None
    message: str = ""
    check: Callable[[SLMDeploymentStatus], bool] | None = None


def none() -> None:
    return None


NOT_RUNNING_CANARY = {"running": frozenset({A})}
BAD = {"validation": validation(B, A, wrong=2)}
SLOW_LIVE = {"live": live(B, traffic(latency=900, ttft=20))}
FEW_LIVE = {"live": live(B, traffic(5))}
APPLY_A = ApplyRevisions(((A, 100),))
APPLY_A_B0 = ApplyRevisions(((A, 100), (B, 0)))
APPLY_STEP0 = ApplyRevisions(((A, 80), (B, 20)))
APPLY_STEP1 = ApplyRevisions(((A, 0), (B, 100)))
OBSERVE_STEP0 = ObserveMetrics(B, A, TS["20"])

QUALITY = {
    "validation": {
        "qualityCheckIntervalSeconds": 60,
        "prompts": spec().rollout.validation.model_dump(by_alias=True)["prompts"],
        "minPassRate": 0.9,
    }
}


def quality_failed() -> SLMDeploymentStatus:
    return decide(
        spec("b", **QUALITY),
        states.promoted(),
        observe(states.promoted(), validation=validation(B, None, wrong=3)),
        generation=2,
        now=at(100),
    ).status


def scaled_to(replicas: int) -> Callable[[], SLMDeploymentStatus]:
    """The steady status with the autoscaler's target for a recorded as `replicas`."""

    def status() -> SLMDeploymentStatus:
        ready = states.ready()
        return decide(spec("a"), ready, observe(ready, desired_replicas={A: replicas}), generation=1, now=at(2)).status

    return status


def wanted(status: SLMDeploymentStatus) -> dict[str, int | None]:
    return {r.name: r.desired_replicas for r in status.revisions}


ROWS: dict[str, Row] = {
    # ---------------------------------------------------------------- first deploy, no rollout
    "first-deploy-no-canary": Row(
        none,
        version="a",
        generation=1,
        t=0,
        observed={"running": frozenset()},
        phase=Phase.DEPLOYING,
        stable=A,
        canary=None,
        weights=((A, 100),),
        conditions={"Ready": ("False", "Deploying")},
        acts=(APPLY_A,),
        events=("Deploying",),
    ),
    "deploying-until-running": Row(
        states.deploying,
        version="a",
        generation=1,
        observed={"running": frozenset()},
        phase=Phase.DEPLOYING,
        acts=(),
        events=(),
    ),
    "first-deploy-becomes-ready": Row(
        states.deploying,
        version="a",
        generation=1,
        phase=Phase.READY,
        stable=A,
        canary=None,
        conditions={"Ready": ("True", "StableServing")},
        acts=(),
        events=(),
    ),
    "spec-change-before-first-ready-replaces-stable": Row(
        states.deploying,
        version="b",
        generation=2,
        observed={"running": frozenset()},
        phase=Phase.DEPLOYING,
        stable=B,
        canary=None,
        weights=((B, 100), (A, 0)),
        acts=(ApplyRevisions(((B, 100), (A, 0))),),
        events=("Deploying",),
    ),
    "steady-nothing-to-do": Row(
        states.ready,
        version="a",
        generation=1,
        phase=Phase.READY,
        canary=None,
        acts=(),
        events=(),
    ),
    # ---------------------------------------------------------------- autoscaling (Serve's target per revision)
    "first-replica-target-recorded-without-event": Row(
        states.ready,
        version="a",
        generation=1,
        observed={"desired_replicas": {A: 1}},
        acts=(),
        events=(),
        check=lambda st: wanted(st) == {A: 1},
    ),
    "autoscaler-target-change-is-an-event": Row(
        scaled_to(1),
        version="a",
        generation=1,
        observed={"desired_replicas": {A: 3}, "ready_replicas": {A: 1}},
        phase=Phase.READY,
        acts=(),
        events=("Scaled",),
        check=lambda st: wanted(st) == {A: 3} and st.ready_replicas == 1,
    ),
    "scale-to-zero-is-an-event": Row(
        scaled_to(1),
        version="a",
        generation=1,
        observed={"desired_replicas": {A: 0}, "ready_replicas": {A: 0}},
        events=("Scaled",),
        check=lambda st: wanted(st) == {A: 0},
    ),
    "unobserved-target-keeps-its-last-value": Row(
        scaled_to(2),
        version="a",
        generation=1,
        acts=(),
        events=(),
        check=lambda st: wanted(st) == {A: 2},
    ),
    "stable-stops-running": Row(
        states.ready,
        version="a",
        generation=1,
        observed={"running": frozenset()},
        phase=Phase.DEGRADED,
        conditions={"Ready": ("False", "StableNotRunning")},
        acts=(),
    ),
    # ---------------------------------------------------------------- start and validation
    "new-revision-starts-canary": Row(
        states.ready,
        t=10,
        phase=Phase.VALIDATING,
        stable=A,
        canary=B,
        weights=((A, 100), (B, 0)),
        conditions={"Progressing": ("True", "RolloutStarted"), "CanaryValidated": ("Unknown", "Validating")},
        acts=(APPLY_A_B0,),
        events=("RolloutStarted",),
        check=lambda s: s.rollout is not None and s.rollout.step == -1 and s.rollout.started_at is not None,
    ),
    "waits-for-canary-to-run": Row(
        states.started,
        observed=NOT_RUNNING_CANARY,
        phase=Phase.VALIDATING,
        canary=B,
        acts=(),
        events=(),
        message="waiting for canary",
    ),
    "canary-that-never-starts-fails": Row(
        states.started,
        t=10 + 1800,
        observed=NOT_RUNNING_CANARY,
        phase=Phase.DEGRADED,
        canary=None,
        conditions={"Degraded": ("True", "RolledBack")},
        message="did not start within 1800 s",
    ),
    "canary-stopping-mid-step-is-judged-on-live-metrics": Row(
        states.step0,
        t=25,
        observed={"running": frozenset({A}), "live": live(B, traffic(50, errors=50))},
        phase=Phase.DEGRADED,
        canary=None,
        message="live error rate 1.000",
    ),
    "running-canary-gets-validated": Row(
        states.started,
        phase=Phase.VALIDATING,
        acts=(RunValidation(B, A),),
        events=(),
        message="validating",
    ),
    "validation-for-another-revision-ignored": Row(
        states.started,
        observed={"validation": validation(C, A)},
        phase=Phase.VALIDATING,
        acts=(RunValidation(B, A),),
    ),
    "validation-pass-enters-first-step": Row(
        states.started,
        t=20,
        observed={"validation": validation(B, A)},
        phase=Phase.PROGRESSING,
        canary=B,
        weights=((A, 80), (B, 20)),
        conditions={"CanaryValidated": ("True", "ValidationPassed")},
        acts=(APPLY_STEP0,),
        events=("ValidationPassed", "TrafficStepStarted"),
        check=lambda s: s.rollout is not None and (s.rollout.step, s.rollout.step_started_at) == (0, TS["20"]),
    ),
    "validation-fail-rolls-back-and-lists-answers": Row(
        states.started,
        t=20,
        observed=BAD,
        phase=Phase.DEGRADED,
        stable=A,
        canary=None,
        weights=((A, 100),),
        conditions={
            "Degraded": ("True", "RolledBack"),
            "Progressing": ("False", "RolledBack"),
            "CanaryValidated": ("False", "ValidationFailed"),
        },
        acts=(APPLY_A,),
        events=("RolledBack",),
        message="pass rate 0.50 < minPassRate 0.90",
        check=lambda s: (
            s.last_validation is not None
            and [(r.name, r.passed, r.answer) for r in s.last_validation.results][:2]
            == [("france", False, "Madrid"), ("japan", False, "Madrid")]
        ),
    ),
    "validation-fail-without-auto-rollback-holds-at-stable": Row(
        states.started,
        t=20,
        observed=BAD,
        rollout={"autoRollback": False},
        phase=Phase.DEGRADED,
        canary=B,
        weights=((A, 100), (B, 0)),
        conditions={"Degraded": ("True", "CanaryFailed")},
        acts=(),
        events=("CanaryFailed",),
        message="resume, promote or abort",
        check=lambda s: s.rollout is not None and s.rollout.paused,
    ),
    "slow-canary-fails-gate-on-latency-ratio": Row(
        states.started,
        t=20,
        observed={"validation": validation(B, A, latency=500)},
        phase=Phase.DEGRADED,
        canary=None,
        message="latency is 5.00x the stable's on the same prompts",
    ),
    "no-steps-promotes-right-after-validation": Row(
        states.started,
        t=20,
        observed={"validation": validation(B, A)},
        rollout={"steps": []},
        phase=Phase.READY,
        stable=B,
        canary=None,
        weights=((B, 100), (A, 0)),
        conditions={"Progressing": ("False", "Promoted"), "Degraded": ("False", "Promoted")},
        acts=(ApplyRevisions(((B, 100), (A, 0))),),
        events=("ValidationPassed", "Promoted"),
    ),
    "no-golden-prompts-pass-with-a-note": Row(
        states.started,
        t=20,
        observed={"validation": ValidationRun(B, (), A, ())},
        rollout={"validation": {"prompts": []}},
        phase=Phase.PROGRESSING,
        weights=((A, 80), (B, 20)),
        check=lambda s: s.last_validation is not None and s.last_validation.reason == NO_PROMPTS_NOTE,
    ),
    "paused-after-validation-waits": Row(
        states.started,
        t=20,
        observed={"validation": validation(B, A), "command": "pause"},
        phase=Phase.PAUSED,
        weights=((A, 100), (B, 0)),
        acts=(ClearCommand(),),
        events=("Paused", "ValidationPassed"),
    ),
    # ---------------------------------------------------------------- traffic steps
    "step-holds-during-pause": Row(
        states.step0,
        t=25,
        observed={"live": live(B)},
        phase=Phase.PROGRESSING,
        weights=((A, 80), (B, 20)),
        acts=(OBSERVE_STEP0,),
        events=(),
        message="holding 5 s more",
    ),
    "step-advances-after-pause-with-clean-metrics": Row(
        states.step0,
        t=30,
        observed={"live": live(B)},
        phase=Phase.PROGRESSING,
        weights=((A, 0), (B, 100)),
        acts=(APPLY_STEP1,),
        events=("TrafficStepStarted",),
        check=lambda s: (
            s.rollout is not None
            and s.rollout.step == 1
            and s.last_live is not None
            and (s.last_live.revision, s.last_live.step, s.last_live.weight, s.last_live.outcome) == (B, 0, 20, "Pass")
        ),
    ),
    "step-never-advances-unobserved": Row(
        states.step0,
        t=300,
        phase=Phase.PROGRESSING,
        weights=((A, 80), (B, 20)),
        acts=(OBSERVE_STEP0,),
    ),
    "step-waits-for-enough-traffic": Row(
        states.step0,
        t=300,
        observed=FEW_LIVE,
        phase=Phase.PROGRESSING,
        weights=((A, 80), (B, 20)),
        acts=(OBSERVE_STEP0,),
        message="waiting for a conclusive comparison (5 of 20 canary requests so far)",
    ),
    "step-waits-while-the-comparison-is-inconclusive": Row(
        states.step0,
        t=300,
        observed={"live": live(B, traffic(latency=300))},  # 3x the stable: right at maxLatencyRatio
        phase=Phase.PROGRESSING,
        weights=((A, 80), (B, 20)),
        acts=(OBSERVE_STEP0,),
        message="latency median 300 ms is 3.00x the stable's 100 ms (max 3x; n = 100/100): not yet conclusive",
        check=lambda s: s.last_live is not None and s.last_live.outcome == "Inconclusive",
    ),
    "step-inconclusive-after-the-decisive-sample-count-passes": Row(
        states.step0,
        t=300,
        observed={"live": LiveSamples(B, traffic(400, latency=300), traffic(400))},
        weights=((A, 0), (B, 100)),
        acts=(APPLY_STEP1,),
        check=lambda s: s.last_live is not None and "not shown slower than allowed after 400" in s.last_live.reason,
    ),
    "step-waits-while-the-stable-is-short-of-samples": Row(
        states.step0,
        t=300,
        observed={"live": LiveSamples(B, traffic(latency=900), traffic(10))},  # slow, but nothing to compare with
        phase=Phase.PROGRESSING,
        weights=((A, 80), (B, 20)),
        acts=(OBSERVE_STEP0,),
        message="latency not yet conclusive: 100 canary and 10 stable samples (need 20 each)",
        check=lambda s: s.last_live is not None and s.last_live.outcome == "Inconclusive",
    ),
    "step-waits-until-max-wait-after-the-pause": Row(
        states.step0,
        t=629,  # step from t=20, pause 10 s, maxWaitSeconds 600 by default
        observed=FEW_LIVE,
        phase=Phase.PROGRESSING,
        weights=((A, 80), (B, 20)),
        acts=(OBSERVE_STEP0,),
    ),
    "step-still-inconclusive-at-max-wait-rolls-back": Row(
        states.step0,
        t=630,
        observed=FEW_LIVE,
        phase=Phase.DEGRADED,
        stable=A,
        canary=None,
        weights=((A, 100), (B, 0)),
        conditions={"Degraded": ("True", "RolledBack")},
        acts=(APPLY_A_B0,),
        events=("TrafficStepTimeout", "RolledBack"),
        message="traffic step 1 (20%): live comparison not conclusive 600 s after the pause (maxWaitSeconds): "
        "5 of 20 canary requests so far",
    ),
    "step-unobserved-at-max-wait-holds-without-auto-rollback": Row(
        lambda: states.step0(False),
        t=40,
        rollout={
            "autoRollback": False,
            "steps": [{"weight": 20, "pauseSeconds": 10, "maxWaitSeconds": 10}, {"weight": 100}],
        },
        phase=Phase.DEGRADED,
        canary=B,
        weights=((A, 100), (B, 0)),
        conditions={"Degraded": ("True", "CanaryFailed")},
        acts=(APPLY_A_B0,),
        events=("TrafficStepTimeout", "CanaryFailed"),
        message="not conclusive 10 s after the pause (maxWaitSeconds): no samples from the router",
    ),
    "metrics-of-another-canary-ignored": Row(
        states.step0,
        t=300,
        observed={"live": live(C)},
        weights=((A, 80), (B, 20)),
        acts=(OBSERVE_STEP0,),
    ),
    "step-breach-rolls-back-and-drains": Row(
        states.step0,
        t=25,
        observed=SLOW_LIVE,
        phase=Phase.DEGRADED,
        stable=A,
        canary=None,
        weights=((A, 100), (B, 0)),
        conditions={"Degraded": ("True", "RolledBack")},
        acts=(APPLY_A_B0,),
        events=("RolledBack",),
        message="traffic step 1 (20%): latency median 900 ms is 9.00x the stable's 100 ms",
        check=lambda s: (
            s.last_live is not None
            and s.last_live.outcome == "Fail"
            and [c.outcome for c in s.last_live.checks] == ["Fail", "Pass", "Pass"]
        ),
    ),
    "step-breach-without-auto-rollback-holds-traffic-at-stable": Row(
        lambda: states.step0(False),
        t=25,
        observed=SLOW_LIVE,
        rollout={"autoRollback": False},
        phase=Phase.DEGRADED,
        canary=B,
        weights=((A, 100), (B, 0)),
        conditions={"Degraded": ("True", "CanaryFailed")},
        acts=(APPLY_A_B0,),
        events=("CanaryFailed",),
    ),
    "last-step-at-100-does-not-wait-for-the-stables-stragglers": Row(
        states.step1,
        t=31,
        observed={"live": LiveSamples(B, traffic(), traffic(3))},  # answers that began before the step
        phase=Phase.READY,
        stable=B,
        canary=None,
        check=lambda s: (
            s.last_live is not None and "no stable traffic, the canary judged on its own" in s.last_live.reason
        ),
    ),
    "last-step-promotes": Row(
        states.step1,
        t=31,
        observed={"live": live(B)},
        phase=Phase.READY,
        stable=B,
        canary=None,
        weights=((B, 100),),
        conditions={"Progressing": ("False", "Promoted")},
        acts=(ApplyRevisions(((B, 100),)),),
        events=("Promoted",),
    ),
    "manual-promote-keeps-old-stable-until-router-settles": Row(
        states.step0,
        observed={"command": "promote", "routes_settled": False},
        phase=Phase.READY,
        stable=B,
        canary=None,
        weights=((B, 100), (A, 0)),
        acts=(ApplyRevisions(((B, 100), (A, 0))), ClearCommand()),
        events=("Promoted",),
    ),
    "steps-shortened-mid-rollout-promote": Row(
        states.step1,
        t=31,
        rollout={"steps": [{"weight": 100, "pauseSeconds": 0}]},
        stable=B,
        canary=None,
    ),
    # ---------------------------------------------------------------- draining after the fact
    "drained-revision-removed-once-router-settled": Row(
        lambda: (
            decide(
                spec("b"),
                states.step1(),
                observe(states.step1(), command="promote", routes_settled=False),
                generation=2,
                now=at(35),
            ).status
        ),
        t=36,
        phase=Phase.READY,
        weights=((B, 100),),
        acts=(ApplyRevisions(((B, 100),)),),
    ),
    "drained-revision-kept-while-router-unsettled": Row(
        lambda: (
            decide(
                spec("b"), states.step0(), observe(states.step0(), command="promote"), generation=2, now=at(35)
            ).status
        ),
        t=36,
        observed={"routes_settled": False},
        weights=((B, 100), (A, 0)),
        acts=(),
    ),
    # ---------------------------------------------------------------- superseded
    "newer-spec-during-validation-supersedes": Row(
        states.started,
        version="c",
        generation=3,
        phase=Phase.VALIDATING,
        stable=A,
        canary=C,
        weights=((A, 100), (C, 0)),
        acts=(ApplyRevisions(((A, 100), (C, 0))),),
        events=("Superseded", "RolloutStarted"),
    ),
    "newer-spec-during-step-supersedes-and-drains": Row(
        states.step0,
        version="c",
        generation=3,
        phase=Phase.VALIDATING,
        stable=A,
        canary=C,
        weights=((A, 100), (C, 0), (B, 0)),
        events=("Superseded", "RolloutStarted"),
        check=lambda s: (
            s.rollout is not None and s.rollout.step == -1 and s.rollout.started_at == "2026-11-01T12:00:25Z"
        ),
    ),
    "spec-back-to-stable-withdraws-canary": Row(
        states.step0,
        version="a",
        generation=3,
        phase=Phase.READY,
        stable=A,
        canary=None,
        weights=((A, 100), (B, 0)),
        conditions={"Progressing": ("False", "Superseded")},
        events=("Superseded",),
        check=lambda s: s.rollout is None and "Degraded" not in conditions(s),
    ),
    # ---------------------------------------------------------------- manual commands
    "pause-holds-the-step": Row(
        states.step0,
        t=22,
        observed={"command": "pause"},
        phase=Phase.PAUSED,
        weights=((A, 80), (B, 20)),
        acts=(ClearCommand(),),
        events=("Paused",),
        check=lambda s: s.rollout is not None and s.rollout.paused,
    ),
    "paused-step-does-not-advance": Row(
        states.paused_step0,
        t=300,
        observed={"live": live(B)},
        phase=Phase.PAUSED,
        weights=((A, 80), (B, 20)),
        acts=(),
        events=(),
    ),
    "same-command-again-is-not-reapplied": Row(
        states.paused_step0,
        t=300,
        observed={"command": "pause", "live": live(B)},
        phase=Phase.PAUSED,
        acts=(ClearCommand(),),
        events=(),
    ),
    "paused-rollout-still-rolls-back-on-breach": Row(
        states.paused_step0,
        t=300,
        observed=SLOW_LIVE,
        phase=Phase.DEGRADED,
        canary=None,
        events=("RolledBack",),
    ),
    "resume-restarts-the-step-window": Row(
        states.paused_step0,
        t=300,
        observed={"command": "resume", "live": live(B)},
        phase=Phase.PROGRESSING,
        weights=((A, 80), (B, 20)),
        acts=(ClearCommand(), ObserveMetrics(B, A, "2026-11-01T12:05:00Z")),
        events=("Resumed",),
        check=lambda s: s.rollout is not None and not s.rollout.paused,
    ),
    "promote-during-validation": Row(
        states.started,
        observed={"command": "promote"},
        phase=Phase.READY,
        stable=B,
        canary=None,
        weights=((B, 100), (A, 0)),
        events=("Promoted",),
        message="promoted by rollout-command",
    ),
    "abort-rolls-back": Row(
        states.step0,
        observed={"command": "abort"},
        phase=Phase.DEGRADED,
        stable=A,
        canary=None,
        weights=((A, 100), (B, 0)),
        conditions={"Degraded": ("True", "RolledBack")},
        acts=(APPLY_A_B0, ClearCommand()),
        events=("RolledBack",),
        message="aborted by rollout-command",
    ),
    "held-waits-for-a-command": Row(
        states.held,
        t=300,
        rollout={"autoRollback": False},
        phase=Phase.DEGRADED,
        canary=B,
        acts=(),
        events=(),
    ),
    "resume-from-hold-validates-again": Row(
        states.held,
        t=300,
        observed={"command": "resume"},
        rollout={"autoRollback": False},
        phase=Phase.VALIDATING,
        canary=B,
        conditions={"Degraded": ("False", "Resumed")},
        acts=(ClearCommand(), RunValidation(B, A)),
        events=("Resumed",),
    ),
    "promote-from-hold": Row(
        states.held,
        t=300,
        observed={"command": "promote"},
        rollout={"autoRollback": False},
        phase=Phase.READY,
        stable=B,
        canary=None,
        conditions={"Degraded": ("False", "Promoted")},
    ),
    "abort-from-hold": Row(
        states.held,
        t=300,
        observed={"command": "abort"},
        rollout={"autoRollback": False},
        phase=Phase.DEGRADED,
        stable=A,
        canary=None,
        weights=((A, 100),),
        conditions={"Degraded": ("True", "RolledBack")},
    ),
    "command-without-rollout-ignored": Row(
        states.ready,
        version="a",
        generation=1,
        observed={"command": "promote"},
        phase=Phase.READY,
        acts=(ClearCommand(),),
        events=("CommandIgnored",),
    ),
    "unknown-command-rejected": Row(
        states.step0,
        observed={"command": "retry", "live": live(B)},
        phase=Phase.PROGRESSING,
        acts=(ClearCommand(), OBSERVE_STEP0),
        events=("CommandIgnored",),
    ),
    "stale-command-at-rollout-start-not-acted-upon": Row(
        lambda: (
            decide(spec("b"), states.ready(), observe(states.ready(), command="abort"), generation=2, now=at(10)).status
        ),
        t=12,
        observed={"command": "abort"},
        phase=Phase.VALIDATING,
        canary=B,
        acts=(ClearCommand(), RunValidation(B, A)),
    ),
    # ---------------------------------------------------------------- after a rollback
    "rolled-back-revision-not-retried-same-generation": Row(
        states.rolled_back,
        t=300,
        phase=Phase.DEGRADED,
        canary=None,
        weights=((A, 100),),
        acts=(),
        events=(),
        message="change the spec to retry",
    ),
    "rolled-back-revision-retried-on-new-generation": Row(
        states.rolled_back,
        generation=3,
        t=300,
        phase=Phase.VALIDATING,
        canary=B,
        events=("RolloutStarted",),
    ),
    "spec-back-to-stable-clears-rollback": Row(
        states.rolled_back,
        version="a",
        generation=3,
        t=300,
        phase=Phase.READY,
        canary=None,
        conditions={"Degraded": ("False", "StableRequested")},
    ),
    # ---------------------------------------------------------------- quality checks after promotion
    "quality-check-due-after-interval": Row(
        states.promoted,
        t=20 + 60,
        rollout={"validation": {"qualityCheckIntervalSeconds": 60}},
        acts=(RunValidation(B, None),),
        events=(),
    ),
    "quality-check-not-due-yet": Row(
        states.promoted,
        t=20 + 59,
        rollout={"validation": {"qualityCheckIntervalSeconds": 60}},
        acts=(),
    ),
    "quality-check-off-by-default": Row(states.promoted, t=10_000, acts=()),
    "quality-check-failure-degrades-without-moving-traffic": Row(
        states.promoted,
        t=100,
        observed={"validation": validation(B, None, wrong=3)},
        rollout=QUALITY,
        phase=Phase.DEGRADED,
        stable=B,
        weights=((B, 100),),
        conditions={"Degraded": ("True", "QualityCheckFailed")},
        acts=(RecordQuality(B, False, 0.25),),
        events=("QualityCheckFailed",),
    ),
    "quality-check-failing-again-no-new-event": Row(
        quality_failed,
        t=160,
        observed={"validation": validation(B, None, wrong=3)},
        rollout=QUALITY,
        phase=Phase.DEGRADED,
        acts=(RecordQuality(B, False, 0.25),),
        events=(),
    ),
    "quality-check-pass-clears-degraded": Row(
        quality_failed,
        t=160,
        observed={"validation": validation(B, None)},
        rollout=QUALITY,
        phase=Phase.READY,
        conditions={"Degraded": ("False", "QualityCheckPassed")},
        acts=(RecordQuality(B, True, 1.0),),
        events=(),
    ),
}


@pytest.mark.parametrize("name", list(ROWS))
def test_transition(name: str) -> None:
    row = ROWS[name]
    given = row.given()
    before = given.model_copy(deep=True) if given is not None else None
    observation = observe(given, **row.observed) if given is not None else Observation(**row.observed)
    the_spec = spec(row.version, **row.rollout)

    decision = decide(the_spec, given, observation, generation=row.generation, now=at(row.t), settings=SETTINGS)
    again = decide(the_spec, given, observation, generation=row.generation, now=at(row.t), settings=SETTINGS)

    assert decision == again, "not deterministic"
    assert given == before, "input status was modified"
    status = decision.status
    assert status.observed_generation == row.generation
    if row.phase is not None:
        assert status.phase is row.phase, status.message
    if row.stable is not None:
        assert status.stable_revision == row.stable
    if row.canary != "unchecked":
        assert status.canary_revision == row.canary
    if row.weights is not None:
        assert tuple((r.name, r.weight) for r in status.revisions) == row.weights
        assert status.canary_weight == next((w for n, w in row.weights if n == status.canary_revision), 0)
    for kind, expected in row.conditions.items():
        assert conditions(status).get(kind) == expected, kind
    if row.acts is not None:
        assert [a for a in decision.actions if type(a).__name__ != "EmitEvent"] == list(row.acts)
    if row.events is not None:
        assert events(decision) == list(row.events)
    assert row.message in status.message
    if row.check is not None:
        assert row.check(status)
