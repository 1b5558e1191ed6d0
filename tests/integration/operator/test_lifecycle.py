"""The real operator (kopf, in-process) against the API emulator, driven with the `kubernetes` client."""

from __future__ import annotations

import kubernetes
import pytest

from tests.harness.cluster import RAYS, SLMD, condition, rays, slmd, tiny, wait_for
from tests.harness.emulator import EmulatorThread


def _apps(apps: dict[str, object]) -> dict[str, object]:
    return {"status": {"activeServiceStatus": {"applicationStatuses": apps}}}


def test_create_builds_owned_rayservice_and_status(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, operator: object
) -> None:
    created = k8s.create_namespaced_custom_object(*SLMD, tiny())
    rs = wait_for(lambda: rays(k8s), what="RayService")
    owner = rs["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("SLMDeployment", created["metadata"]["uid"], True)
    obj = wait_for(lambda: (o := slmd(k8s)).get("status") and o)
    assert obj["status"]["phase"] == "Deploying"
    assert obj["status"]["observedGeneration"] == 1
    assert obj["status"]["endpoint"] == "http://tiny-serve-svc.default.svc:8000/v1"
    assert condition(obj, "Ready")["reason"] == "Deploying"
    assert obj["spec"] == created["spec"]  # nothing written to spec


def test_rayservice_status_drives_phase_and_replicas(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, operator: object
) -> None:
    """KubeRay is not running here: the test writes the RayService status KubeRay would write."""
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    obj = wait_for(lambda: (o := slmd(k8s)).get("status") and o)
    revision = obj["status"]["stableRevision"]
    apps = {"router": {"status": "RUNNING"}, f"rev-{revision}": {"status": "RUNNING"}}
    k8s.patch_namespaced_custom_object_status(*RAYS, "tiny", _apps(apps))
    ready = wait_for(lambda: (o := slmd(k8s))["status"]["phase"] == "Ready" and o)
    assert condition(ready, "Ready")["status"] == "True"
    assert ready["status"]["readyReplicas"] == 1
    assert ready["status"]["revisions"][0]["readyReplicas"] == 1
    apps[f"rev-{revision}"] = {"status": "DEPLOY_FAILED", "message": "engine crashed"}
    k8s.patch_namespaced_custom_object_status(*RAYS, "tiny", _apps(apps))
    bad = wait_for(lambda: (o := slmd(k8s))["status"]["phase"] == "Degraded" and o)
    assert condition(bad, "Ready")["status"] == "False"
    assert condition(bad, "Ready")["reason"] == "StableNotRunning"
    assert "engine crashed" in bad["status"]["message"]  # KubeRay's reason reaches the status
    reasons = wait_for(
        lambda: (
            {e["reason"] for e in api.objects("events")} >= {"RayServiceCreated", "Deploying"}
            and {e["reason"] for e in api.objects("events")}
        )
    )
    assert reasons


def test_autoscaling_change_updates_in_place(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, operator: object
) -> None:
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    first = wait_for(lambda: (o := slmd(k8s)).get("status") and o)
    rs = rays(k8s)
    k8s.patch_namespaced_custom_object(*SLMD, "tiny", {"spec": {"autoscaling": {"maxReplicas": 3}}})
    after = wait_for(lambda: (r := rays(k8s))["metadata"]["resourceVersion"] != rs["metadata"]["resourceVersion"] and r)
    assert after["metadata"]["uid"] == rs["metadata"]["uid"]  # same object, updated in place
    assert "max_replicas: 3" in after["spec"]["serveConfigV2"]
    obj = wait_for(lambda: (o := slmd(k8s))["status"]["observedGeneration"] == 2 and o)
    assert obj["status"]["stableRevision"] == first["status"]["stableRevision"]  # no new revision
    assert api.count("create", "rayservices") == 1


def test_model_change_starts_a_canary_in_the_same_rayservice(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, operator: object
) -> None:
    """A new revision is added beside the stable one, at 0 % until validated: same RayService, same
    cluster config (no second RayCluster)."""
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    first = wait_for(lambda: (o := slmd(k8s)).get("status") and o)
    old = first["status"]["stableRevision"]
    apps = {"router": {"status": "RUNNING"}, f"rev-{old}": {"status": "RUNNING"}}
    k8s.patch_namespaced_custom_object_status(*RAYS, "tiny", _apps(apps))
    wait_for(lambda: slmd(k8s)["status"]["phase"] == "Ready")
    before = rays(k8s)
    k8s.patch_namespaced_custom_object(*SLMD, "tiny", {"spec": {"model": {"source": "tiny://bad"}}})
    obj = wait_for(lambda: (o := slmd(k8s))["status"].get("canaryRevision") and o)
    new = obj["status"]["canaryRevision"]
    assert obj["status"]["stableRevision"] == old and obj["status"]["canaryWeight"] == 0
    assert condition(obj, "Progressing")["reason"] == "RolloutStarted"
    rs = wait_for(lambda: (r := rays(k8s))["metadata"]["annotations"]["slm.dev/revisions"] == f"{old},{new}" and r)
    assert f"rev-{new}" in rs["spec"]["serveConfigV2"] and f"rev-{old}" in rs["spec"]["serveConfigV2"]
    assert rs["metadata"]["uid"] == before["metadata"]["uid"]
    assert rs["spec"]["rayClusterConfig"] == before["spec"]["rayClusterConfig"]


def test_delete_garbage_collects_rayservice(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, operator: object
) -> None:
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    wait_for(lambda: rays(k8s))
    k8s.delete_namespaced_custom_object(*SLMD, "tiny")
    wait_for(lambda: not k8s.list_namespaced_custom_object(*RAYS)["items"], what="RayService gone")
    assert not k8s.list_namespaced_custom_object(*SLMD)["items"]


def test_invalid_spec_sets_condition_and_builds_nothing(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, operator: object
) -> None:
    """The API server would refuse these objects (422). Such objects are stored all the same when they
    predate a CRD that tightened its rules (`tiny`: a CEL rule), or when they were written while no
    operator replica answered the admission webhook, which fails open (`admitted`: a source only the
    webhook refuses); so the emulator's store receives them directly."""
    bad = tiny()
    bad["spec"]["autoscaling"] = {"minReplicas": 3, "maxReplicas": 1}
    admitted = tiny("admitted")
    admitted["spec"]["model"]["source"] = "hf://justonepart"
    expected = {"tiny": "spec.autoscaling.minReplicas", "admitted": "spec.model.source"}
    for obj in (bad, admitted):
        with pytest.raises(kubernetes.client.ApiException) as refused:
            k8s.create_namespaced_custom_object(*SLMD, obj)
        assert refused.value.status == 422 and expected[obj["metadata"]["name"]] in refused.value.body

    def store_unchecked(handler: object) -> None:
        resource = handler.store.resources["slm.dev/v1alpha1/slmdeployments"]  # type: ignore[attr-defined]
        saved = list(resource.validators)
        resource.validators.clear()
        try:
            for obj in (bad, admitted):
                handler.store.create(resource, "default", obj)  # type: ignore[attr-defined]
        finally:
            resource.validators[:] = saved

    api.call(store_unchecked)
    for name, field in expected.items():
        obj = wait_for(lambda name=name: (o := slmd(k8s, name)).get("status") and o)
        ready = condition(obj, "Ready")
        assert obj["status"]["phase"] == "Failed"
        assert ready is not None and ready["reason"] == "InvalidSpec" and field in ready["message"]
    assert not k8s.list_namespaced_custom_object(*RAYS)["items"]
    assert "InvalidSpec" in wait_for(lambda: {e["reason"] for e in api.objects("events")})


def test_rollout_commands_through_the_annotation(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, operator: object
) -> None:
    """`kubectl annotate slmd tiny slm.dev/rollout-command=pause|abort`: acted upon, then removed."""
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    stable = wait_for(lambda: (o := slmd(k8s)).get("status") and o)["status"]["stableRevision"]
    k8s.patch_namespaced_custom_object_status(
        *RAYS, "tiny", _apps({"router": {"status": "RUNNING"}, f"rev-{stable}": {"status": "RUNNING"}})
    )
    wait_for(lambda: slmd(k8s)["status"]["phase"] == "Ready")
    k8s.patch_namespaced_custom_object(*SLMD, "tiny", {"spec": {"model": {"source": "tiny://bad"}}})
    canary = wait_for(lambda: slmd(k8s)["status"].get("canaryRevision"))

    def annotate(command: str) -> None:
        k8s.patch_namespaced_custom_object(
            *SLMD, "tiny", {"metadata": {"annotations": {"slm.dev/rollout-command": command}}}
        )

    def command_cleared() -> bool:
        return "slm.dev/rollout-command" not in (slmd(k8s)["metadata"].get("annotations") or {})

    annotate("pause")
    paused = wait_for(lambda: (o := slmd(k8s))["status"]["phase"] == "Paused" and o, what="paused")
    assert paused["status"]["rollout"]["paused"] is True
    wait_for(command_cleared, what="pause annotation removed")
    annotate("abort")
    aborted = wait_for(lambda: (o := slmd(k8s))["status"].get("canaryRevision") is None and o, what="aborted")
    assert aborted["status"]["stableRevision"] == stable
    assert condition(aborted, "Degraded")["reason"] == "RolledBack"
    assert canary != stable
    wait_for(command_cleared, what="abort annotation removed")
    wait_for(lambda: {"Paused", "RolledBack"} <= {e["reason"] for e in api.objects("events")}, what="events")
