"""Which SLMDeployments get a kopf timer, and the replica gauges the operator exports."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from slm_operator.api.models import (
    CostComparison,
    RevisionStatus,
    RevisionTemplate,
    ShadowResult,
    SLMDeploymentStatus,
)
from slm_operator.handlers import autoscaled, needs_timer
from slm_operator.metrics import OperatorMetrics

SCALING = {"autoscaling": {"minReplicas": 1, "maxReplicas": 4}}
FIXED = {"autoscaling": {"minReplicas": 2, "maxReplicas": 2}}
SERVING = {"stableRevision": "aaa", "revisions": [{"name": "aaa"}]}
ROLLING = {"stableRevision": "aaa", "canaryRevision": "bbb", "rollout": {"step": 0}, "revisions": [{}, {}]}

TIMERS: dict[str, tuple[dict[str, Any], dict[str, Any], bool, bool]] = {
    # name: (spec, status, rollout timer, replicas timer)
    "fixed-size-steady": (FIXED, SERVING, False, False),
    "defaults-steady": ({}, SERVING, False, False),
    "autoscaled-steady": (SCALING, SERVING, False, True),
    "autoscaled-not-deployed-yet": (SCALING, {}, False, False),
    "autoscaled-mid-rollout": (SCALING, ROLLING, True, False),  # the rollout timer refreshes replicas too
    "fixed-mid-rollout": (FIXED, ROLLING, True, False),
    "retired-revision-draining": (FIXED, {"stableRevision": "aaa", "revisions": [{}, {}]}, True, False),
    "quality-checks": ({"rollout": {"validation": {"qualityCheckIntervalSeconds": 60}}}, SERVING, True, False),
}


@pytest.mark.parametrize("name", list(TIMERS))
def test_timer_predicates(name: str) -> None:
    spec, status, rollout_timer, replicas_timer = TIMERS[name]
    assert needs_timer(status=status, spec=spec) is rollout_timer
    assert autoscaled(status=status, spec=spec) is replicas_timer


def _revision(name: str, ready: int, desired: int | None) -> RevisionStatus:
    return RevisionStatus(
        name=name,
        role="stable",
        weight=100,
        template=RevisionTemplate.model_validate({"model": {"source": "tiny://good", "servedModelName": "tiny"}}),
        ready_replicas=ready,
        desired_replicas=desired,
    )


def _series(metrics: OperatorMetrics) -> set[str]:
    return {
        line.split(" ")[0]
        for line in generate_latest(metrics.registry).decode().splitlines()
        if line.startswith("slm_revision_replicas{")
    }


def test_replica_gauges_follow_the_live_revisions() -> None:
    metrics = OperatorMetrics()
    metrics.set_replicas("ns", "tiny", [_revision("aaa", 1, 3), _revision("bbb", 0, None)])
    assert _series(metrics) == {
        'slm_revision_replicas{name="tiny",namespace="ns",revision="aaa",state="ready"}',
        'slm_revision_replicas{name="tiny",namespace="ns",revision="aaa",state="desired"}',
        'slm_revision_replicas{name="tiny",namespace="ns",revision="bbb",state="ready"}',
    }
    metrics.set_replicas("ns", "tiny", [_revision("bbb", 2, 2)])  # aaa retired
    assert {s.split("revision=")[1] for s in _series(metrics)} == {'"bbb",state="ready"}', '"bbb",state="desired"}'}
    metrics.set_replicas("ns", "tiny", [])  # deleted
    assert _series(metrics) == set()


def test_cost_gauges_exist_only_while_the_costed_rollout_is_in_progress() -> None:
    metrics = OperatorMetrics()
    cost = CostComparison.model_validate(
        {
            "revision": "bbb",
            "step": 0,
            "weight": 20,
            "since": "2026-11-01T12:00:00Z",
            "time": "2026-11-01T12:01:00Z",
            "outcome": "Pass",
            "ratio": 1.1,
            "revisions": [
                {"revision": rev, "role": role, "accelerator": "cpu", "unitsPerReplica": 1, "unitHourPrice": 0.04,
                 "acceleratorSeconds": 60, "requests": 40, "promptTokens": 9, "completionTokens": 400, "cost": 0.1,
                 "costPerMillionOutputTokens": per_million}
                for rev, role, per_million in (("bbb", "canary", 250.0), ("aaa", "stable", None))
            ],
        }
    )  # fmt: skip
    rolling = SLMDeploymentStatus(stable_revision="aaa", canary_revision="bbb", last_cost=cost)

    def series() -> set[str]:
        lines = generate_latest(metrics.registry).decode().splitlines()
        return {
            line for line in lines if line.startswith(("slm_revision_cost", "slm_revision_acc", "slm_rollout_cost"))
        }

    metrics.set_costs("ns", "tiny", rolling)
    assert series() == {
        'slm_revision_cost_per_million_output_tokens{name="tiny",namespace="ns",revision="bbb",role="canary"} 250.0',
        'slm_revision_accelerator_seconds{name="tiny",namespace="ns",revision="bbb",role="canary"} 60.0',
        'slm_revision_accelerator_seconds{name="tiny",namespace="ns",revision="aaa",role="stable"} 60.0',
        'slm_rollout_cost_ratio{name="tiny",namespace="ns"} 1.1',
    }
    metrics.set_costs("ns", "tiny", rolling.model_copy(update={"canary_revision": None}))  # rollout over
    assert series() == set()
    metrics.set_costs("ns", "tiny", rolling)
    metrics.set_costs("ns", "tiny", None)  # deleted
    assert series() == set()


def test_shadow_gauges_show_the_last_shadow_phase_until_the_deployment_is_gone() -> None:
    metrics = OperatorMetrics()

    def series() -> set[str]:
        lines = generate_latest(metrics.registry).decode().splitlines()
        return {line for line in lines if line.startswith("slm_rollout_shadow")}

    def judged(pairs: int, agreed: int) -> SLMDeploymentStatus:
        shadow = ShadowResult(
            revision="bbb",
            since="2026-11-01T12:00:00Z",
            time="2026-11-01T12:01:00Z",
            outcome="Inconclusive",
            comparison="normalized",
            pairs=pairs,
            agreed=agreed,
            agreement=round(agreed / pairs, 4) if pairs else None,
        )
        return SLMDeploymentStatus(stable_revision="aaa", canary_revision="bbb", last_shadow=shadow)

    metrics.set_shadow("ns", "tiny", judged(0, 0))  # no pair yet: nothing to show
    assert series() == set()
    metrics.set_shadow("ns", "tiny", judged(40, 30))
    assert series() == {
        'slm_rollout_shadow_agreement{name="tiny",namespace="ns"} 0.75',
        'slm_rollout_shadow_pairs{name="tiny",namespace="ns"} 40.0',
    }
    promoted = judged(40, 30).model_copy(update={"stable_revision": "bbb", "canary_revision": None})
    metrics.set_shadow("ns", "tiny", promoted)  # the last phase's figures stay, as in status
    assert len(series()) == 2
    metrics.set_shadow("ns", "tiny", None)  # deleted
    assert series() == set()
