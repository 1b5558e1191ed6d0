"""Adapter rollouts through `decide` and the builder, pass by pass (pure): a new source for an adapter
name keeps the revision, loads the new version beside the old one in the stable's engines, validates it
with the prompts naming the adapter, then promotes it through the spec's steps or rolls it back.

The engines' adapter state and the answers to golden prompts are the only stand-ins (the boundary:
what the router's `GET /slm/adapters` and the probes would report)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from slm_operator.api.models import AdapterPhase, ConditionType, SLMDeploymentSpec, SLMDeploymentStatus
from slm_operator.builder.serve_config import build_serve_config
from slm_operator.rollout.actions import (
    ApplyRevisions,
    LoadAdapter,
    SetAdapterWeights,
    UnloadAdapter,
    ValidateAdapter,
)
from slm_operator.rollout.adapters import AdapterObservation, adapter_version, engine_adapter_name
from slm_operator.rollout.conditions import find_condition
from slm_operator.rollout.decide import Decision, decide
from slm_operator.rollout.gate import PromptOutcome, ValidationRun
from slm_serving.config import RouterUserConfig
from tests.unit.rollout.helpers import at, events, observe, spec

V1, V2 = "tiny://lora-good", "s3://bucket/atlas-v2"
PROMPT = {"name": "atlas-capital", "prompt": "Capital of Peru?", "maxTokens": 8, "expect": {"contains": ["Quito"]}}


def _spec(source: str) -> SLMDeploymentSpec:
    base = spec()
    document: dict[str, Any] = base.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["adapters"] = [{"name": "atlas", "source": source, "rank": 8}]
    document["rollout"]["validation"]["prompts"].append(PROMPT | {"adapter": "atlas"})
    return SLMDeploymentSpec.model_validate(document)


def _pass(
    source: str, status: SLMDeploymentStatus | None, seconds: float, generation: int, **observed: Any
) -> Decision:
    return decide(_spec(source), status, observe(status, **observed), generation=generation, now=at(seconds))


def _serving_on_v1() -> SLMDeploymentStatus:
    deployed = _pass(V1, None, 0, 1).status
    return _pass(V1, deployed, 5, 1).status


def _versions(decision: Decision, source: str) -> list[tuple[str, int]]:
    """The adapter versions (and weights) every engine is told to hold, from the serve config built
    from the decided status."""
    config = build_serve_config(_spec(source), decision.status)
    user_config = config.applications[0].deployments[0].user_config
    assert user_config is not None
    (route,) = RouterUserConfig.model_validate(user_config).adapters
    return [(v.version, v.weight) for v in route.versions]


def _kinds(actions: Sequence[object]) -> list[str]:
    return [type(a).__name__ for a in actions if isinstance(a, LoadAdapter | UnloadAdapter | ValidateAdapter)]


def _answered(source: str, answer: str) -> ValidationRun:
    key = engine_adapter_name("atlas", adapter_version(source))
    return ValidationRun(key, (PromptOutcome("atlas-capital", answer=answer, latency_ms=10.0, ttft_ms=2.0),))


def _both_loaded() -> AdapterObservation:
    return AdapterObservation(loaded=frozenset(engine_adapter_name("atlas", adapter_version(s)) for s in (V1, V2)))


def test_the_served_version_is_adopted_without_a_rollout() -> None:
    status = _serving_on_v1()
    (adapter,) = status.adapters
    assert adapter.phase is AdapterPhase.STABLE and adapter.stable is not None and adapter.canary is None
    assert (adapter.stable.source, adapter.stable.weight) == (V1, 100)


def test_a_new_source_is_an_adapter_rollout_in_the_stable_revision() -> None:
    serving = _serving_on_v1()
    started = _pass(V2, serving, 10, 2)
    assert started.status.stable_revision == serving.stable_revision and started.status.canary_revision is None
    assert not any(isinstance(a, ApplyRevisions) for a in started.actions)
    assert _kinds(started.actions) == ["LoadAdapter"] and "AdapterLoading" in events(started)
    assert _versions(started, V2) == [(adapter_version(V1), 100), (adapter_version(V2), 0)]

    validating = _pass(V2, started.status, 15, 2, adapters=_both_loaded())
    (validate,) = [a for a in validating.actions if isinstance(a, ValidateAdapter)]
    assert validate.revision == serving.stable_revision
    assert [(p.name, p.adapter) for p in validate.prompts] == [("atlas-capital", "atlas")]


def test_a_bad_version_is_rolled_back_before_any_request_naming_the_adapter_reaches_it() -> None:
    started = _pass(V2, _serving_on_v1(), 10, 2)
    validating = _pass(V2, started.status, 15, 2, adapters=_both_loaded())
    observed = replace(_both_loaded(), validation={_answered(V2, "Lima.").revision: _answered(V2, "Lima.")})
    failed = _pass(V2, validating.status, 20, 2, adapters=observed)
    (adapter,) = failed.status.adapters
    assert adapter.phase is AdapterPhase.FAILED and adapter.failed_source == V2
    assert "AdapterRolledBack" in events(failed)
    assert _versions(failed, V2) == [(adapter_version(V1), 100)]  # v2 unloaded, v1 never lost its share
    assert _versions(started, V2)[1][1] == _versions(validating, V2)[1][1] == 0


def test_a_good_version_takes_the_spec_steps_then_the_old_one_is_unloaded() -> None:
    started = _pass(V2, _serving_on_v1(), 10, 2)
    validating = _pass(V2, started.status, 15, 2, adapters=_both_loaded())
    observed = replace(_both_loaded(), validation={_answered(V2, "Quito.").revision: _answered(V2, "Quito.")})
    step = _pass(V2, validating.status, 20, 2, adapters=observed)
    assert [a for a in step.actions if isinstance(a, SetAdapterWeights)] == [
        SetAdapterWeights("atlas", ((adapter_version(V1), 80), (adapter_version(V2), 20)))
    ]
    assert _versions(step, V2) == [(adapter_version(V1), 80), (adapter_version(V2), 20)]
    last = _pass(V2, step.status, 30, 2, adapters=_both_loaded())  # 20 % held its 10 s: 100 %
    promoted = _pass(V2, last.status, 30, 2, adapters=_both_loaded())  # 100 % held its 0 s: promoted
    (adapter,) = promoted.status.adapters
    assert adapter.phase is AdapterPhase.STABLE and adapter.stable is not None and adapter.stable.source == V2
    assert "AdapterPromoted" in events(promoted)
    assert _versions(promoted, V2) == [(adapter_version(V2), 100)]
    assert promoted.status.stable_revision == started.status.stable_revision


def _adapters_ready(status: SLMDeploymentStatus) -> tuple[str, str, str] | None:
    found = find_condition(status.conditions, ConditionType.ADAPTERS_READY)
    return None if found is None else (found.status, found.reason, found.message)


def test_adapters_ready_follows_an_adapter_rollout_and_its_rollback() -> None:
    serving = _serving_on_v1()
    assert _adapters_ready(serving) == (
        "True",
        "AdaptersStable",
        f"every adapter serves its spec's version: atlas@{adapter_version(V1)}",
    )
    started = _pass(V2, serving, 10, 2)
    assert _adapters_ready(started.status) == (
        "False",
        "AdapterRollingOut",
        f"atlas: loading version {adapter_version(V2)}",
    )
    validating = _pass(V2, started.status, 15, 2, adapters=_both_loaded())
    observed = replace(_both_loaded(), validation={_answered(V2, "Lima.").revision: _answered(V2, "Lima.")})
    failed = _pass(V2, validating.status, 20, 2, adapters=observed)
    ready = _adapters_ready(failed.status)
    assert ready is not None and ready[:2] == ("False", "AdapterRolledBack")
    assert f"atlas: {V2} (version {adapter_version(V2)}) rolled back: " in ready[2]
    assert ready[2].endswith(f"; version {adapter_version(V1)} serves it")
    reverted = _adapters_ready(_pass(V1, failed.status, 25, 3).status)  # the spec goes back to v1
    assert reverted is not None and reverted[:2] == ("True", "AdaptersStable")


def test_no_adapters_no_adapters_ready_condition() -> None:
    deployed = decide(spec(), None, observe(None), generation=1, now=at(0)).status
    assert _adapters_ready(decide(spec(), deployed, observe(deployed), generation=1, now=at(5)).status) is None
