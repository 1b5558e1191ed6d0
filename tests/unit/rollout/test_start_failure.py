"""Replicas that fail to start: Serve 2.60's messages → shortened cause, and what `decide` does with it."""

from __future__ import annotations

import pytest

from slm_operator.api.models import ConditionType, Phase
from slm_operator.rollout.conditions import find_condition
from slm_operator.rollout.decide import Observation, decide
from slm_operator.rollout.start_failure import StartFailure, parse_start_failure, shorten_error
from slm_operator.status import observe, phase_event, running_revisions, start_failures
from tests.unit.rollout import states
from tests.unit.rollout.helpers import REV, SETTINGS, at, events, spec

TRACE = (
    'Traceback (most recent call last):\n  File "engine.py", line 9, in __init__\n'
    "slm_serving.model_source.ModelSourceError: cannot fetch hf://org/m: ConnectError\n"
)
RETRYING = f"A replica failed to start with exception. Retrying 2 more time(s). Error:\n{TRACE}"
GAVE_UP = (
    "The deployment failed to start 3 times in a row. This may be due to a problem with its constructor "
    f"or initial health check failing. See controller logs for details. Error:\n{TRACE}"
)
CAUSE = "ModelSourceError: cannot fetch hf://org/m: ConnectError"


@pytest.mark.parametrize(
    ("app_status", "message", "expected"),
    [
        ("DEPLOYING", RETRYING, StartFailure(CAUSE, final=False, retries_left=2)),
        ("DEPLOY_FAILED", GAVE_UP, StartFailure(CAUSE, final=True)),
        ("DEPLOYING", "", None),
        ("RUNNING", "", None),
    ],
)
def test_parse_start_failure(app_status: str, message: str, expected: StartFailure | None) -> None:
    assert parse_start_failure(app_status, {"LLMEngine": message}) == expected


def test_long_errors_are_shortened_in_the_middle_where_the_end_says_what_is_wrong() -> None:
    short = shorten_error("Error:\nslm_serving.model_source.ModelSourceError: " + "x" * 500 + " does not exist")
    assert len(short) == 200 and short.startswith("ModelSourceError: xxx") and short.endswith("x does not exist")


def test_first_deploy_shows_the_first_failure_once_then_fails_when_serve_gives_up() -> None:
    a = REV["a"]
    failing = Observation(start_failures={a: StartFailure(CAUSE, final=False, retries_left=2)})
    first = decide(spec("a"), states.deploying(), failing, generation=1, now=at(1), settings=SETTINGS)
    assert CAUSE in first.status.message and first.status.phase is Phase.DEPLOYING
    assert events(first) == ["ReplicaStartFailing"]
    again = decide(spec("a"), first.status, failing, generation=1, now=at(2), settings=SETTINGS)
    assert events(again) == []  # not re-posted per retry
    gave_up = Observation(start_failures={a: StartFailure(CAUSE, final=True)})
    failed = decide(spec("a"), again.status, gave_up, generation=1, now=at(3), settings=SETTINGS)
    assert failed.status.phase is Phase.FAILED and CAUSE in failed.status.message
    assert events(failed) == ["ReplicaStartFailed"]


def test_a_first_deploy_that_serve_gives_up_on_is_not_ready_for_that_reason_posted_once() -> None:
    """Ready says why (not `Deploying`); the shell's phase Event is not posted beside decide's own."""
    gave_up = Observation(start_failures={REV["a"]: StartFailure(CAUSE, final=True)})
    failed = decide(spec("a"), states.deploying(), gave_up, generation=1, now=at(1), settings=SETTINGS)
    ready = find_condition(failed.status.conditions, ConditionType.READY)
    assert ready is not None and (ready.status, ready.reason) == ("False", "ReplicaStartFailed")
    assert CAUSE in ready.message
    assert phase_event(Phase.DEPLOYING, failed.status, frozenset(events(failed))) is None
    alone = phase_event(Phase.DEPLOYING, failed.status, frozenset())
    assert alone is not None and (alone.type, alone.reason) == ("Warning", "ReplicaStartFailed")
    assert phase_event(Phase.FAILED, failed.status, frozenset()) is None  # no change of phase


def test_a_new_spec_after_a_failed_first_deploy_starts_over() -> None:
    """The replacement deploys under its own name: not Failed with the old revision's cause."""
    gave_up = Observation(start_failures={REV["a"]: StartFailure(CAUSE, final=True)})
    failed = decide(spec("a"), states.deploying(), gave_up, generation=1, now=at(1), settings=SETTINGS)
    fixed = decide(spec("c"), failed.status, Observation(), generation=2, now=at(2), settings=SETTINGS)
    assert fixed.status.stable_revision == REV["c"] and fixed.status.phase is Phase.DEPLOYING
    assert CAUSE not in fixed.status.message and events(fixed) == ["Deploying"]
    ready = find_condition(fixed.status.conditions, ConditionType.READY)
    assert ready is not None and ready.reason == "Deploying"


def test_the_revision_entry_keeps_the_first_failed_starts_error_until_it_runs() -> None:
    """Serve's message says only the latest failure; the entry keeps the first one's error."""
    a = REV["a"]
    first = Observation(start_failures={a: StartFailure(CAUSE, final=False, retries_left=2)})
    failing = decide(spec("a"), states.deploying(), first, generation=1, now=at(1), settings=SETTINGS)
    (entry,) = failing.status.revisions
    assert entry.start_failure == CAUSE
    later = Observation(start_failures={a: StartFailure("OSError: disk full", final=True)})
    failed = decide(spec("a"), failing.status, later, generation=1, now=at(2), settings=SETTINGS)
    assert [r.start_failure for r in failed.status.revisions] == [CAUSE]
    running = Observation(running=frozenset({a}), ready_replicas={a: 1})
    started = decide(spec("a"), failed.status, running, generation=1, now=at(3), settings=SETTINGS)
    assert [r.start_failure for r in started.status.revisions] == [None]


def test_a_failing_canary_shows_the_cause_in_its_entry_and_one_event_while_serve_retries() -> None:
    a, b = REV["a"], REV["b"]
    serving = {"running": frozenset({a}), "ready_replicas": {a: 1}, "routes_settled": True}
    retrying = Observation(**serving, start_failures={b: StartFailure(CAUSE, final=False, retries_left=2)})
    first = decide(spec("b"), states.started(), retrying, generation=2, now=at(11), settings=SETTINGS)
    by_name = {r.name: r for r in first.status.revisions}
    assert (by_name[b].start_failure, by_name[a].start_failure) == (CAUSE, None)
    assert first.status.canary_revision == b and events(first) == ["ReplicaStartFailing"]
    again = Observation(**serving, start_failures={b: StartFailure(CAUSE, final=False, retries_left=1)})
    second = decide(spec("b"), first.status, again, generation=2, now=at(12), settings=SETTINGS)
    assert events(second) == [] and "1 more time(s)" in second.status.message


def test_a_canary_that_serve_gives_up_on_is_rolled_back_with_the_cause() -> None:
    b = REV["b"]
    gave_up = Observation(
        running=frozenset({REV["a"]}),
        ready_replicas={REV["a"]: 1},
        routes_settled=True,
        start_failures={b: StartFailure(CAUSE, final=True)},
    )
    decision = decide(spec("b"), states.started(), gave_up, generation=2, now=at(11), settings=SETTINGS)
    assert decision.status.canary_revision is None and CAUSE in decision.status.message


def test_a_first_deploy_that_fails_is_read_from_the_pending_cluster() -> None:
    """KubeRay keeps the first RayCluster pending until every application runs (v1.7.0): the failing
    revision is reported in `pendingServiceStatus` only, and is not running."""
    apps = {
        "router": {"status": "RUNNING"},
        "rev-a": {
            "status": "DEPLOYING",
            "serveDeploymentStatuses": {"LLMEngine": {"status": "UPDATING", "message": RETRYING}},
        },
    }
    rayservice = {"metadata": {"name": "tiny"}, "status": {"pendingServiceStatus": {"applicationStatuses": apps}}}
    observed = observe(rayservice)
    assert running_revisions(observed, ["a"]) == frozenset()
    assert start_failures(observed, ["a"]) == {"a": StartFailure(CAUSE, final=False, retries_left=2)}
