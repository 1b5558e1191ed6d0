"""Whole rollouts through a fake shell, with a crash injected at every pass: same end every time.

The shell (kopf timer, local loop) and Ray Serve cannot run in a unit test; `FakeShell` stands in for
both (see its docstring). A crash either loses a pass's decision before its status is persisted, or
persists the status and loses all its actions — the two places a real operator can die.
"""

from __future__ import annotations

from functools import cache

import pytest

from slm_operator.api.models import Phase
from tests.unit.rollout.helpers import REV, FakeShell, outcome, spec

A, B, C = REV["a"], REV["b"], REV["c"]
PASSES = 30

SCENARIOS = {
    "good-canary-promoted": (
        dict(specs={1: spec("a"), 2: spec("b")}),
        {3: 2},
        (Phase.READY, B, None, ((B, 100),)),
    ),
    "wrong-answers-rolled-back": (
        dict(specs={1: spec("a"), 2: spec("b")}, canary_wrong=2),
        {3: 2},
        (Phase.DEGRADED, A, None, ((A, 100),)),
    ),
    "slow-canary-rolled-back": (
        dict(specs={1: spec("a"), 2: spec("b")}, canary_latency=900),
        {3: 2},
        (Phase.DEGRADED, A, None, ((A, 100),)),
    ),
    "slow-under-live-traffic-rolled-back-at-a-step": (
        dict(specs={1: spec("a"), 2: spec("b")}, live_latency=900),
        {3: 2},
        (Phase.DEGRADED, A, None, ((A, 100),)),
    ),
    "held-without-auto-rollback": (
        dict(specs={1: spec("a"), 2: spec("b", autoRollback=False)}, canary_wrong=2),
        {3: 2},
        (Phase.DEGRADED, A, B, ((A, 100), (B, 0))),
    ),
    "superseded-mid-steps-then-promoted": (
        dict(specs={1: spec("a"), 2: spec("b"), 3: spec("c")}),
        {3: 2, 7: 3},
        (Phase.READY, C, None, ((C, 100),)),
    ),
    "no-steps-promoted-after-validation": (
        dict(specs={1: spec("a"), 2: spec("b", steps=[])}),
        {3: 2},
        (Phase.READY, B, None, ((B, 100),)),
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_ends_as_expected(name: str) -> None:
    knobs, switches, expected = SCENARIOS[name]
    status = FakeShell(**knobs).run(PASSES, switches)  # type: ignore[arg-type]
    assert outcome(status)[:4] == expected, status.message


def test_live_breach_rolls_back_after_the_first_step() -> None:
    shell = FakeShell(specs={1: spec("a"), 2: spec("b")}, live_latency=900)
    status = shell.run(PASSES, {3: 2})
    assert shell.reasons[-3:] == ["ValidationPassed", "TrafficStepStarted", "RolledBack"]
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "RolledBack")
    assert "traffic step 1 (20%): latency median 900 ms is 9.00x" in degraded.message
    assert "change the spec to retry" in status.message


def test_promotion_goes_through_every_stage_in_order() -> None:
    shell = FakeShell(specs={1: spec("a"), 2: spec("b")})
    shell.run(PASSES, {3: 2})
    assert shell.reasons == [
        "Deploying",
        "RolloutStarted",
        "ValidationPassed",
        "TrafficStepStarted",
        "TrafficStepStarted",
        "Promoted",
    ]


@cache
def undisturbed(name: str) -> tuple[object, ...]:
    knobs, switches, _ = SCENARIOS[name]
    return outcome(FakeShell(**knobs).run(PASSES, switches))  # type: ignore[arg-type]


@pytest.mark.parametrize("after_persist", [False, True], ids=["before-persist", "after-persist"])
@pytest.mark.parametrize("crash_at", range(PASSES))
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_crash_at_any_pass_ends_the_same(name: str, crash_at: int, after_persist: bool) -> None:
    knobs, switches, _ = SCENARIOS[name]
    crashed = FakeShell(**knobs, crash_at=crash_at, crash_after_persist=after_persist).run(  # type: ignore[arg-type]
        PASSES, switches
    )
    assert outcome(crashed) == undisturbed(name)
