"""The API emulator's own behaviour, checked with the real `kubernetes` client over TCP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import kubernetes
import pytest

from tests.harness.cluster import RAYS, SLMD, names, tiny
from tests.harness.emulator import EmulatorThread


def _rayservice(name: str, owner: dict[str, str] | None = None) -> dict[str, object]:
    meta: dict[str, object] = {"name": name, "labels": {"app": name}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "slm.dev/v1alpha1", "kind": "SLMDeployment", **owner}]
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": meta,
        "spec": {
            "serveConfigV2": "applications: []",
            "rayClusterConfig": {
                "headGroupSpec": {
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [{"name": "h", "image": "i"}]}},
                }
            },
        },
    }


def test_create_stamps_metadata_and_drops_status(k8s: kubernetes.client.CustomObjectsApi) -> None:
    body = tiny()
    body["status"] = {"phase": "Ready"}
    obj = k8s.create_namespaced_custom_object(*SLMD, body)
    meta = obj["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1 and int(meta["resourceVersion"]) > 0
    assert "status" not in obj  # status subresource: ignored on create
    assert obj["spec"]["autoscaling"]["downscaleDelaySeconds"] == 120  # schema default filled in
    with pytest.raises(kubernetes.client.ApiException) as exists:
        k8s.create_namespaced_custom_object(*SLMD, tiny())
    assert exists.value.status == 409


def test_generation_status_isolation_and_stale_writes(k8s: kubernetes.client.CustomObjectsApi) -> None:
    obj = k8s.create_namespaced_custom_object(*SLMD, tiny())
    labelled = k8s.patch_namespaced_custom_object(*SLMD, "tiny", {"metadata": {"labels": {"x": "y"}}})
    assert labelled["metadata"]["generation"] == 1
    with_status = k8s.patch_namespaced_custom_object_status(
        *SLMD, "tiny", {"spec": {"autoscaling": {"maxReplicas": 9}}, "status": {"phase": "Ready"}}
    )
    assert with_status["status"]["phase"] == "Ready" and with_status["spec"]["autoscaling"]["maxReplicas"] == 1
    changed = k8s.patch_namespaced_custom_object(*SLMD, "tiny", {"spec": {"autoscaling": {"maxReplicas": 2}}})
    assert changed["metadata"]["generation"] == 2
    stale = dict(obj)
    with pytest.raises(kubernetes.client.ApiException) as conflict:
        k8s.replace_namespaced_custom_object(*SLMD, "tiny", stale)
    assert conflict.value.status == 409


def test_validation_names_fields(k8s: kubernetes.client.CustomObjectsApi) -> None:
    bad = tiny()
    bad["spec"]["model"]["source"] = "ftp://nope"
    with pytest.raises(kubernetes.client.ApiException) as refused:
        k8s.create_namespaced_custom_object(*SLMD, bad)
    assert refused.value.status == 422
    causes = json.loads(refused.value.body)["details"]["causes"]
    assert [c["field"] for c in causes] == ["spec.model.source", "spec.model.source"]  # CEL rule, webhook check
    rs = _rayservice("r")
    rs["spec"]["serveConfigV2"] = 5  # type: ignore[index]
    with pytest.raises(kubernetes.client.ApiException) as typed:
        k8s.create_namespaced_custom_object(*RAYS, rs)
    assert "spec.serveConfigV2" in typed.value.body


def test_unknown_fields_are_pruned(k8s: kubernetes.client.CustomObjectsApi) -> None:
    body = tiny()
    body["spec"]["surprise"] = 1
    assert "surprise" not in k8s.create_namespaced_custom_object(*SLMD, body)["spec"]


def test_json_patch_test_failure_is_422(api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi) -> None:
    """kopf guards its patches with JSON-patch `test` ops; a failed test is 422, not a 500."""
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    request = urllib.request.Request(
        f"{api.url}/apis/slm.dev/v1alpha1/namespaces/default/slmdeployments/tiny",
        method="PATCH",
        data=json.dumps([{"op": "test", "path": "/metadata/name", "value": "x"}]).encode(),
        headers={"Content-Type": "application/json-patch+json"},
    )
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(request, timeout=10)
    assert failed.value.code == 422


def test_owner_deletion_collects_dependents(k8s: kubernetes.client.CustomObjectsApi) -> None:
    owner = k8s.create_namespaced_custom_object(*SLMD, tiny())
    k8s.create_namespaced_custom_object(*RAYS, _rayservice("child", {"name": "tiny", "uid": owner["metadata"]["uid"]}))
    k8s.create_namespaced_custom_object(*RAYS, _rayservice("other"))
    orphan = _rayservice("orphan", {"name": "gone", "uid": "no-such-uid"})
    k8s.create_namespaced_custom_object(*RAYS, orphan)
    k8s.delete_namespaced_custom_object(*SLMD, "tiny")
    assert names(k8s.list_namespaced_custom_object(*RAYS)) == ["other"]


def test_selectors_and_watch_from_resource_version(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi
) -> None:
    k8s.create_namespaced_custom_object(*RAYS, _rayservice("a"))
    listed = k8s.list_namespaced_custom_object(*RAYS)
    k8s.create_namespaced_custom_object(*RAYS, _rayservice("b"))
    assert names(k8s.list_namespaced_custom_object(*RAYS, label_selector="app=b")) == ["b"]
    assert names(k8s.list_namespaced_custom_object(*RAYS, field_selector="metadata.name!=b")) == ["a"]
    since = listed["metadata"]["resourceVersion"]
    url = f"{api.url}/apis/ray.io/v1/namespaces/default/rayservices?watch=true&resourceVersion={since}&timeoutSeconds=1"
    with urllib.request.urlopen(url, timeout=10) as stream:
        events = [json.loads(line) for line in stream.read().splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b")]
    k8s.create_namespaced_custom_object(*RAYS, _rayservice("c"))
    api.call(lambda h: [h.store.log.popleft() for _ in range(len(h.store.log) - 1)])  # history compacted
    with urllib.request.urlopen(url, timeout=10) as stream:
        expired = json.loads(stream.readline())
    assert expired["type"] == "ERROR" and expired["object"]["code"] == 410
