"""The KubeRay stand-in's watch sees every RayService write and fails the test on a broken rule."""

from __future__ import annotations

import kubernetes
import pytest

from slm_operator.builder.cluster_change import ClusterChange
from slm_operator.builder.rayservice import build_rayservice
from tests.conftest import EXAMPLES
from tests.harness.cluster import RAYS, rays
from tests.harness.emulator import EmulatorThread
from tests.harness.kuberay import KubeRayWatch
from tests.unit.builder.test_builders import _load


def test_every_write_is_judged_and_a_violation_fails_the_block(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi
) -> None:
    rayservice = build_rayservice(_load(EXAMPLES / "tiny.yaml", uid=None))
    with pytest.raises(AssertionError, match="undeclared new RayCluster"), KubeRayWatch(k8s) as watch:
        k8s.create_namespaced_custom_object(*RAYS, rayservice)
        grown = rays(k8s)
        group = grown["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
        grown["spec"]["rayClusterConfig"]["workerGroupSpecs"].append({**group, "groupName": "other"})
        k8s.replace_namespaced_custom_object(*RAYS, "tiny", grown)
        shrunk = rays(k8s)
        shrunk["spec"]["rayClusterConfig"]["workerGroupSpecs"].pop()
        k8s.replace_namespaced_custom_object(*RAYS, "tiny", shrunk)  # written and replaced at once
        watch.drain()
        assert watch.rules["tiny"].decisions == [
            ClusterChange.NEW_CLUSTER,
            ClusterChange.UPDATE_IN_PLACE,
            ClusterChange.NEW_CLUSTER,
        ]
