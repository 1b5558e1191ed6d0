"""Conflicts, API errors, outages and restarts injected at the emulator: the operator gets there in
the end, with exactly one RayService and no redundant writes."""

from __future__ import annotations

import kubernetes
import pytest

from slm_operator.kube import ConflictError, KubeApi, build_api_client
from slm_operator.runner import operator_in_thread
from slm_operator.settings import OperatorSettings
from tests.harness.cluster import RAYS, SLMD, client_for, rays, slmd, tiny, wait_for
from tests.harness.emulator import EmulatorThread, Fault


def _status(k8s: kubernetes.client.CustomObjectsApi) -> dict[str, object] | None:
    obj = slmd(k8s)
    return obj if obj.get("status", {}).get("observedGeneration") else None


def test_conflicts_and_server_errors_are_retried(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, operator: object
) -> None:
    api.inject(
        Fault(verb="create", plural="rayservices", code=503, times=2),
        Fault(verb="patch", plural="slmdeployments", subresource="status", code=500, times=1),
        Fault(verb="get", plural="rayservices", code=0, times=1),  # dropped connection
    )
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    wait_for(lambda: _status(k8s), what="status after faults")
    assert len(k8s.list_namespaced_custom_object(*RAYS)["items"]) == 1
    assert api.call(lambda h: [f.hits for f in h.faults]) == [2, 1, 1]


def test_conflicting_writer_on_the_rayservice(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, operator: object
) -> None:
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    wait_for(lambda: _status(k8s))
    api.inject(Fault(verb="update", plural="rayservices", code=409, times=3))
    k8s.patch_namespaced_custom_object(*SLMD, "tiny", {"spec": {"autoscaling": {"maxReplicas": 2}}})
    rs = wait_for(
        lambda: (r := rays(k8s)) and "max_replicas: 2" in r["spec"]["serveConfigV2"] and r, what="update despite 409s"
    )
    assert rs["metadata"]["generation"] == 2
    assert api.count("create", "rayservices") == 1


def test_outage_then_recovery(api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, operator: object) -> None:
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    wait_for(lambda: _status(k8s))
    with api.outage():  # connection refused for everyone, watches cut
        wait_for(lambda: api.call(lambda h: not h.store.watchers), what="watches cut")
        api.call(
            lambda h: h.store.update(
                h.store.resources["slm.dev/v1alpha1/slmdeployments"],
                "default",
                "tiny",
                lambda cur: {**cur, "spec": {**cur["spec"], "autoscaling": {"minReplicas": 1, "maxReplicas": 4}}},
            )
        )
    rs = wait_for(
        lambda: (r := rays(k8s)) and "max_replicas: 4" in r["spec"]["serveConfigV2"] and r,
        timeout=40,
        what="change after outage",
    )
    assert rs and api.count("create", "rayservices") == 1


def test_restart_does_no_duplicate_work(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, settings: OperatorSettings
) -> None:
    with operator_in_thread(settings):
        for name in ("a", "b", "c"):
            k8s.create_namespaced_custom_object(*SLMD, tiny(name))
        wait_for(
            lambda: all(
                o.get("status", {}).get("observedGeneration") for o in k8s.list_namespaced_custom_object(*SLMD)["items"]
            ),
            what="three statuses",
        )
    writes = {verb: api.count(verb, "rayservices") for verb in ("create", "update", "patch")}
    status_writes = api.count("patch", "slmdeployments", "status")
    with operator_in_thread(settings):  # resumes: reads everything, finds nothing to do
        wait_for(lambda: api.count("get", "rayservices") >= 3 + writes["create"], what="resume reads")
        k8s.create_namespaced_custom_object(*SLMD, tiny("d"))  # and still works
        wait_for(lambda: len(k8s.list_namespaced_custom_object(*RAYS)["items"]) == 4)
    assert api.count("create", "rayservices") == writes["create"] + 1 == 4
    assert api.count("update", "rayservices") == writes["update"]
    assert api.count("patch", "slmdeployments", "status") <= status_writes + 2  # only d's own


def test_status_write_carries_the_resource_version_read(api: EmulatorThread, settings: OperatorSettings) -> None:
    """`KubeApi.patch_deployment_status` against the emulator: a stale resourceVersion is a 409."""
    k8s = client_for(api)
    created = k8s.create_namespaced_custom_object(*SLMD, tiny())
    kube = KubeApi(build_api_client(settings), settings)
    k8s.patch_namespaced_custom_object(*SLMD, "tiny", {"metadata": {"labels": {"team": "a"}}})  # someone else writes
    with pytest.raises(ConflictError):
        kube.patch_deployment_status(
            "default", "tiny", {"message": "stale"}, resource_version=created["metadata"]["resourceVersion"]
        )
    kube.patch_deployment_status(
        "default", "tiny", {"message": "fresh"}, resource_version=slmd(k8s)["metadata"]["resourceVersion"]
    )
    assert slmd(k8s)["status"]["message"] == "fresh"


def test_a_conflicting_status_write_is_decided_again(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, operator: object
) -> None:
    api.inject(Fault(verb="patch", plural="slmdeployments", subresource="status", code=409, times=2))
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    wait_for(lambda: _status(k8s), what="status after two 409s")
    assert api.count("patch", "slmdeployments", "status") >= 3
