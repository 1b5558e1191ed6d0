"""A Ray image change through the real operator: held for approval, then declared to KubeRay.

The emulator stands in for the API server and `KubeRayWatch` (the `operator` fixture's `kuberay`)
for KubeRay's cluster rules: the test fails if any RayService write would make KubeRay build an
undeclared cluster or leave a change unapplied."""

from __future__ import annotations

import kubernetes

from tests.harness.cluster import RAYS, SLMD, condition, rays, slmd, tiny, wait_for
from tests.harness.emulator import EmulatorThread
from tests.harness.kuberay import KubeRayWatch

NEW_IMAGE = "ghcr.io/slm-dev/slm-serving:0.2.0"


def _images(rayservice: dict[str, object]) -> set[str]:
    config = rayservice["spec"]["rayClusterConfig"]  # type: ignore[index]
    pods = [config["headGroupSpec"]["template"], *(g["template"] for g in config["workerGroupSpecs"])]
    return {c["image"] for pod in pods for c in pod["spec"]["containers"]}


def test_image_bump_waits_for_approval_then_is_a_declared_upgrade(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, kuberay: KubeRayWatch, operator: object
) -> None:
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    stable = wait_for(lambda: (o := slmd(k8s)).get("status") and o)["status"]["stableRevision"]
    apps = {"router": {"status": "RUNNING"}, f"rev-{stable}": {"status": "RUNNING"}}
    k8s.patch_namespaced_custom_object_status(
        *RAYS, "tiny", {"status": {"activeServiceStatus": {"applicationStatuses": apps}}}
    )
    wait_for(lambda: slmd(k8s)["status"]["phase"] == "Ready")
    k8s.patch_namespaced_custom_object(*SLMD, "tiny", {"spec": {"rayImage": NEW_IMAGE}})
    held = wait_for(lambda: (o := slmd(k8s)) and (c := condition(o, "ClusterUpgrade")) and c["status"] == "True" and o)
    assert condition(held, "ClusterUpgrade")["reason"] == "AwaitingApproval"
    pending = held["status"]["cluster"]["pendingUpgrade"]
    assert pending["rayImage"] == NEW_IMAGE and pending["id"] in condition(held, "ClusterUpgrade")["message"]
    assert NEW_IMAGE not in _images(rays(k8s))  # nothing reaches KubeRay before the approval
    assert held["status"]["stableRevision"] == stable  # not a rollout
    k8s.patch_namespaced_custom_object(
        *SLMD, "tiny", {"metadata": {"annotations": {"slm.dev/approve-cluster-upgrade": pending["id"]}}}
    )
    upgraded = wait_for(lambda: (r := rays(k8s)) and _images(r) == {NEW_IMAGE} and r, what="the upgrade")
    assert upgraded["metadata"]["annotations"]["slm.dev/cluster-upgrade"] == pending["id"]
    assert upgraded["spec"]["upgradeStrategy"] == {"type": "NewCluster"}
    wait_for(
        lambda: "slm.dev/approve-cluster-upgrade" not in (slmd(k8s)["metadata"].get("annotations") or {}),
        what="approval annotation removed",
    )
    wait_for(lambda: {"ClusterUpgradePending", "ClusterUpgradeStarted"} <= {e["reason"] for e in api.objects("events")})
    kuberay.drain()
    assert kuberay.rules["tiny"].clusters_built == 2 and kuberay.violations == []
