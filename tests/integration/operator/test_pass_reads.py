"""What a pass reads before it decides, counted by the API emulator (the reconciler driven directly with
the bodies kopf hands its handlers). A body is decided on as given only when it holds the operator's own
last write: a new object, or the object at the resourceVersion our status write left. Any other body is
read again, so a stale trigger never rolls a decision back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from slm_operator.reconcile import Reconciler
from slm_operator.runner import build_memo
from slm_operator.settings import OperatorSettings
from tests.harness.cluster import RAYS, SLMD, slmd, tiny
from tests.harness.emulator import EmulatorThread


@pytest.fixture
def reconciler(settings: OperatorSettings) -> Iterator[Reconciler]:
    reconciler: Reconciler = build_memo(settings).reconciler
    yield reconciler
    reconciler.close()


def reads_by_pass(api: EmulatorThread, reconciler: Reconciler, body: dict[str, Any]) -> dict[str, int]:
    """GETs of the SLMDeployment and of its RayService during one pass over `body`."""
    plurals = ("slmdeployments", "rayservices")
    before = [api.count("get", plural) for plural in plurals]
    reconciler.reconcile(body)
    return {plural: api.count("get", plural) - was for plural, was in zip(plurals, before, strict=True)}


def test_a_new_object_is_decided_on_as_given_and_its_rayservice_created_without_a_read(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, reconciler: Reconciler
) -> None:
    created: dict[str, Any] = k8s.create_namespaced_custom_object(*SLMD, tiny())
    assert reads_by_pass(api, reconciler, created) == {"slmdeployments": 0, "rayservices": 0}
    assert api.count("create", "rayservices") == 1
    after_first = slmd(k8s)
    assert after_first["status"]["observedGeneration"] == 1
    # A timer's body at the version our status write left; it has a status now, so its RayService is read.
    assert reads_by_pass(api, reconciler, after_first) == {"slmdeployments": 0, "rayservices": 1}


def test_a_body_older_than_our_status_write_is_read_again(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, reconciler: Reconciler
) -> None:
    created: dict[str, Any] = k8s.create_namespaced_custom_object(*SLMD, tiny())
    reconciler.reconcile(created)
    written = slmd(k8s)
    # kopf's queued creation event, delivered after our pass
    assert reads_by_pass(api, reconciler, created)["slmdeployments"] == 1
    assert api.count("create", "rayservices") == 1  # decided on the object as read: nothing redone
    assert slmd(k8s)["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]


def test_a_new_object_whose_rayservice_exists_reads_it_after_the_create_conflict(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, reconciler: Reconciler
) -> None:
    """As after a crash between the RayService's create and the first status write."""
    created: dict[str, Any] = k8s.create_namespaced_custom_object(*SLMD, tiny())
    reconciler.reconcile(created)
    k8s.patch_namespaced_custom_object_status(*SLMD, "tiny", {"status": None})
    rayservice_version = k8s.get_namespaced_custom_object(*RAYS, "tiny")["metadata"]["resourceVersion"]
    restarted: Reconciler = build_memo(reconciler.settings).reconciler
    try:
        restarted.reconcile(slmd(k8s))
    finally:
        restarted.close()
    assert api.count("create", "rayservices") == 2  # the second one answered 409
    assert k8s.get_namespaced_custom_object(*RAYS, "tiny")["metadata"]["resourceVersion"] == rayservice_version
    assert slmd(k8s)["status"]["observedGeneration"] == 1
