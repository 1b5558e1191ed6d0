"""The adapter versions every engine holds and their weights (`build_adapter_routes`), from the live
revisions' adapters and the adapter rollouts in `status.adapters`."""

from __future__ import annotations

from slm_operator.api.models import (
    AdapterPhase,
    AdapterRolloutStatus,
    AdapterSpec,
    AdapterVersionStatus,
    ModelSpec,
    RevisionStatus,
    RevisionTemplate,
)
from slm_operator.builder.serve_config import build_adapter_routes
from slm_operator.rollout.adapters import adapter_version
from slm_serving.config import AdapterRoute, AdapterVersionRoute

V1, V2 = "s3://bucket/atlas/v1", "s3://bucket/atlas/v2"
SINCE = "2026-12-03T12:00:00Z"


def _revision(name: str, *adapters: tuple[str, str]) -> RevisionStatus:
    template = RevisionTemplate(
        model=ModelSpec(source="hf://org/base", served_model_name="base"),
        adapters=[AdapterSpec(name=n, source=s) for n, s in adapters],
    )
    return RevisionStatus(name=name, role="stable", weight=100, template=template)


def _version(source: str, weight: int) -> AdapterVersionStatus:
    return AdapterVersionStatus(version=adapter_version(source), source=source, weight=weight)


def _route(name: str, *versions: tuple[str, int]) -> AdapterRoute:
    return AdapterRoute(
        name=name,
        versions=tuple(AdapterVersionRoute(version=adapter_version(s), source=s, weight=w) for s, w in versions),
    )


def test_without_rollouts_each_adapter_serves_its_template_source() -> None:
    revisions = [_revision("r1", ("zeta", V1), ("atlas", V1))]
    assert build_adapter_routes(revisions, "r1", ()) == (_route("atlas", (V1, 100)), _route("zeta", (V1, 100)))


def test_the_adapter_revisions_source_wins_over_a_canary_revisions() -> None:
    stable, canary = _revision("old", ("atlas", V1)), _revision("new", ("atlas", V2), ("extra", V2))
    for order in ([stable, canary], [canary, stable]):
        assert build_adapter_routes(order, "old", ()) == (_route("atlas", (V1, 100)), _route("extra", (V2, 100)))


def test_a_rollout_lists_stable_and_canary_with_their_weights() -> None:
    stepping = AdapterRolloutStatus(
        name="atlas", phase=AdapterPhase.STEPPING, stable=_version(V1, 80), canary=_version(V2, 20), since=SINCE
    )
    assert build_adapter_routes([_revision("r1", ("atlas", V2))], "r1", [stepping]) == (
        _route("atlas", (V1, 80), (V2, 20)),
    )


def test_a_canary_being_validated_is_loaded_at_weight_0() -> None:
    validating = AdapterRolloutStatus(
        name="atlas", phase=AdapterPhase.VALIDATING, stable=_version(V1, 100), canary=_version(V2, 0), since=SINCE
    )
    assert build_adapter_routes([_revision("r1", ("atlas", V2))], "r1", [validating]) == (
        _route("atlas", (V1, 100), (V2, 0)),
    )


def test_a_first_version_that_failed_leaves_the_adapter_without_versions() -> None:
    failed = AdapterRolloutStatus(name="atlas", phase=AdapterPhase.FAILED, since=SINCE, failed_source=V1)
    assert build_adapter_routes([_revision("r1", ("atlas", V1))], "r1", [failed]) == (
        AdapterRoute(name="atlas", versions=()),
    )
