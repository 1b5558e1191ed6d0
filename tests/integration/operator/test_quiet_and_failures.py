"""Events only for transitions, and failures of the RayService write in status.

Over many timer periods a cluster in steady state (autoscaled objects on their replica timer, a
canary validating on the rollout timer) posts no Events; a RayService the API server keeps rejecting
posts one Warning, sets the Ready condition with the reason, is retried with a growing delay and
recovers by itself once the cause is gone; so does a name taken by a RayService we do not own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from slm_operator.runner import operator_in_thread
from slm_operator.settings import OperatorSettings
from tests.harness.cluster import RAYS, SLMD, condition, rays, slmd, tiny, wait_for
from tests.harness.emulator import EmulatorThread, Fault
from tests.harness.kuberay_status import report_all_running
from tests.harness.slow_router import SlowRouter

TIMER_S = 0.3


@pytest.fixture
def slow() -> Iterator[SlowRouter]:
    with SlowRouter() as router:
        yield router


def _events(api: EmulatorThread) -> list[dict[str, Any]]:
    return api.objects("events")


def _autoscaled(name: str) -> dict[str, Any]:
    body = tiny(name)
    body["spec"]["autoscaling"]["maxReplicas"] = 3
    return body


def test_steady_state_posts_no_events_over_many_timer_periods(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, settings: OperatorSettings, slow: SlowRouter
) -> None:
    settings = settings.model_copy(
        update={
            "router_url_template": slow.url,
            "rollout_interval_seconds": TIMER_S,
            "replicas_interval_seconds": TIMER_S,
        }
    )
    with operator_in_thread(settings):
        for name in ("scaled-a", "scaled-b", "canary"):
            k8s.create_namespaced_custom_object(*SLMD, _autoscaled(name))
            wait_for(lambda n=name: rays(k8s, n), what=f"RayService {name}")  # type: ignore[misc]
            report_all_running(k8s, name)
            wait_for(lambda n=name: slmd(k8s, n).get("status", {}).get("phase") == "Ready")  # type: ignore[misc]
        k8s.patch_namespaced_custom_object(*SLMD, "canary", {"spec": {"model": {"source": "tiny://bad"}}})
        wait_for(lambda: len(report_all_running(k8s, "canary")) == 3, what="canary app")
        wait_for(lambda: slow.requests > 0, what="canary validating")
        settled = len(_events(api))
        passes = api.count("get", "rayservices")  # each pass reads its RayService
        # Ten timer passes of each of the three objects, however long a loaded machine takes for them.
        wait_for(lambda: api.count("get", "rayservices") - passes >= 3 * 10, timeout=120, what="30 timer passes")
        assert _events(api)[settled:] == []
    reasons = [e["reason"] for e in _events(api)]
    assert reasons.count("RolloutStarted") == 1
    assert all(e["source"]["component"] == "slm-operator" for e in _events(api))


def test_rejected_rayservice_sets_condition_backs_off_and_recovers(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, settings: OperatorSettings
) -> None:
    settings = settings.model_copy(update={"failure_backoff_seconds": 0.5, "failure_backoff_max_seconds": 2})
    api.inject(Fault(verb="create", plural="rayservices", code=422, times=5))
    with operator_in_thread(settings):
        k8s.create_namespaced_custom_object(*SLMD, tiny())
        failed = wait_for(lambda: (c := condition(slmd(k8s), "Ready")) and c["reason"] == "RayServiceRejected" and c)
        assert failed["status"] == "False" and "422" in failed["message"]
        assert slmd(k8s)["status"]["phase"] == "Pending"  # nothing deployed yet; the condition says why
        wait_for(lambda: rays(k8s), timeout=30, what="RayService after the API server accepts it")
        ready = wait_for(lambda: (c := condition(slmd(k8s), "Ready")) and c["reason"] != "RayServiceRejected" and c)
        assert ready["reason"] == "Deploying"
    assert api.count("create", "rayservices") == 6  # 5 refused, then one: retried with backoff, not hammered
    warnings = [e for e in _events(api) if e["reason"] == "RayServiceRejected"]
    assert len(warnings) == 1  # one Warning for the failure, not one per retry


def test_a_foreign_rayservice_of_that_name_is_reported_and_left_alone(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, settings: OperatorSettings
) -> None:
    settings = settings.model_copy(update={"failure_backoff_seconds": 0.5, "failure_backoff_max_seconds": 1})
    with operator_in_thread(settings):
        k8s.create_namespaced_custom_object(*SLMD, tiny("template"))
        spec = wait_for(lambda: rays(k8s, "template"))["spec"]
        k8s.create_namespaced_custom_object(
            *RAYS, {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "tiny"}, "spec": spec}
        )
        k8s.create_namespaced_custom_object(*SLMD, tiny())
        failed = wait_for(lambda: (c := condition(slmd(k8s), "Ready")) and c["reason"] == "RayServiceNotOwned" and c)
        assert "not managed by slm-operator" in failed["message"]
        assert "ownerReferences" not in rays(k8s)["metadata"]  # never taken over
        k8s.delete_namespaced_custom_object(*RAYS, "tiny")
        ours = wait_for(lambda: (r := rays(k8s)).get("metadata", {}).get("ownerReferences") and r, timeout=30)
        assert ours["metadata"]["ownerReferences"][0]["name"] == "tiny"
        wait_for(lambda: condition(slmd(k8s), "Ready")["reason"] == "Deploying")
