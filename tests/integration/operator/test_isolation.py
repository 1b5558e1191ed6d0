"""A slow canary does not hold up anyone else: golden prompts run in the background, so with more
validating canaries than kopf has worker threads (16) another object's edit still reaches its
RayService while every canary's prompts are still unanswered.

The canaries' router is `tests.harness.slow_router.SlowRouter` (a model that slow cannot run here);
KubeRay's application statuses are written by the test (`tests.harness.kuberay_status`)."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest

from slm_operator.runner import operator_in_thread
from slm_operator.settings import OperatorSettings
from tests.harness.cluster import SLMD, rays, slmd, tiny, wait_for
from tests.harness.kuberay_status import report_all_running
from tests.harness.slow_router import SlowRouter

CANARIES = 20


@pytest.fixture
def slow() -> Iterator[SlowRouter]:
    with SlowRouter() as router:
        yield router


def _phase(k8s: kubernetes.client.CustomObjectsApi, name: str) -> str:
    return str((slmd(k8s, name).get("status") or {}).get("phase"))


def start_validating_canary(k8s: kubernetes.client.CustomObjectsApi, name: str) -> None:
    """Deploy `name`, report it running, change its model (a canary), report the canary running."""
    k8s.create_namespaced_custom_object(*SLMD, tiny(name))
    wait_for(lambda: rays(k8s, name), what=f"RayService {name}")
    report_all_running(k8s, name)
    wait_for(lambda: _phase(k8s, name) == "Ready", what=f"{name} Ready")
    k8s.patch_namespaced_custom_object(*SLMD, name, {"spec": {"model": {"source": "tiny://bad"}}})
    wait_for(lambda: (slmd(k8s, name).get("status") or {}).get("canaryRevision"), what=f"{name} canary")
    wait_for(lambda: len(report_all_running(k8s, name)) == 3, what=f"{name} canary app in the RayService")


def test_slow_canaries_do_not_delay_other_objects(
    k8s: kubernetes.client.CustomObjectsApi, settings: OperatorSettings, slow: SlowRouter
) -> None:
    settings = settings.model_copy(update={"router_url_template": slow.url, "rollout_interval_seconds": 0.5})
    with operator_in_thread(settings):
        k8s.create_namespaced_custom_object(*SLMD, tiny("other"))
        before = wait_for(lambda: rays(k8s, "other"), what="other's RayService")
        for i in range(CANARIES):
            start_validating_canary(k8s, f"canary-{i}")
        wait_for(lambda: slow.requests >= CANARIES, what="every canary's golden prompts sent")
        assert all(_phase(k8s, f"canary-{i}") == "Validating" for i in range(CANARIES))

        k8s.patch_namespaced_custom_object(*SLMD, "other", {"spec": {"autoscaling": {"maxReplicas": 3}}})

        after = wait_for(
            lambda: (
                (r := rays(k8s, "other"))["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"] and r
            ),
            what="other's RayService updated",
        )
        assert "max_replicas: 3" in after["spec"]["serveConfigV2"]
        assert slow.answered == 0  # every canary is still waiting for its answers
        assert all(_phase(k8s, f"canary-{i}") == "Validating" for i in range(CANARIES))
