"""The KubeRay stand-in's rules (`tests.harness.kuberay.KubeRayRules`) on RayServices from the real
builder: what it accepts and what it records as a violation."""

from __future__ import annotations

import copy
from typing import Any

from slm_operator import constants
from slm_operator.builder.cluster_change import ClusterChange
from slm_operator.builder.rayservice import build_rayservice
from tests.conftest import EXAMPLES
from tests.harness.kuberay import KubeRayRules
from tests.unit.builder.test_builders import _load


def _rayservice() -> dict[str, Any]:
    return build_rayservice(_load(EXAMPLES / "phi3-mini.yaml"))


def _groups(rayservice: dict[str, Any]) -> list[dict[str, Any]]:
    return rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]  # type: ignore[no-any-return]


def test_creation_then_same_spec_is_nothing() -> None:
    rules = KubeRayRules("phi3")
    assert rules.observe(_rayservice()) is ClusterChange.NEW_CLUSTER
    assert rules.observe(_rayservice()) is None
    assert (rules.clusters_built, rules.violations) == (1, [])


def test_appended_group_is_in_place_and_removing_it_is_an_undeclared_new_cluster() -> None:
    rules = KubeRayRules("phi3")
    first = _rayservice()
    rules.observe(first)
    grown = copy.deepcopy(first)
    extra = copy.deepcopy(_groups(first)[0]) | {"groupName": "gpu-other"}
    _groups(grown).append(extra)
    assert rules.observe(grown) is ClusterChange.UPDATE_IN_PLACE
    assert rules.observe(first) is ClusterChange.NEW_CLUSTER
    assert rules.clusters_built == 2
    assert len(rules.violations) == 1 and "undeclared new RayCluster" in rules.violations[0]


def test_declared_upgrade_is_accepted_once() -> None:
    rules = KubeRayRules("phi3")
    rules.observe(_rayservice())
    upgraded = _rayservice()
    upgraded["spec"]["rayClusterConfig"]["rayVersion"] = "2.61.0"
    upgraded["metadata"]["annotations"][constants.ANNOTATION_CLUSTER_UPGRADE] = "abc"
    assert rules.observe(upgraded) is ClusterChange.NEW_CLUSTER and rules.violations == []
    again = copy.deepcopy(upgraded)
    again["spec"]["rayClusterConfig"]["rayVersion"] = "2.62.0"  # same declaration: not a new upgrade
    rules.observe(again)
    assert "undeclared" in rules.violations[0]


def test_change_kuberay_ignores_is_a_violation() -> None:
    rules = KubeRayRules("phi3")
    rules.observe(_rayservice())
    edited = _rayservice()
    _groups(edited)[0]["template"]["spec"]["tolerations"] = []
    assert rules.observe(edited) is None
    assert "KubeRay would not apply workerGroupSpecs[0].template.spec.tolerations" in rules.violations[0]


def test_upgrade_strategy_none_drops_the_change() -> None:
    rules = KubeRayRules("phi3")
    rules.observe(_rayservice())
    edited = _rayservice()
    edited["spec"]["upgradeStrategy"] = {"type": "None"}
    edited["spec"]["rayClusterConfig"]["rayVersion"] = "2.61.0"
    rules.observe(edited)
    assert "silently not applied" in rules.violations[0]


def test_invalid_for_the_kuberay_crd() -> None:
    rules = KubeRayRules("phi3")
    bad = _rayservice()
    _groups(bad)[0]["replicas"] = "two"
    rules.observe(bad)
    assert any("invalid for KubeRay's CRD" in v and "replicas" in v for v in rules.violations)
