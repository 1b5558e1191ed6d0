"""A RayService watch event that is only the operator's own write coming back runs no pass; any other
RayService event does. The reconciler is driven directly (no kopf: its RayService handler is one call to
`Reconciler.rayservice_changed`) against the API emulator, so each event is handed over exactly once."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from slm_operator.runner import build_memo
from slm_operator.settings import OperatorSettings
from tests.harness.cluster import SLMD, rays, tiny
from tests.harness.emulator import EmulatorThread
from tests.harness.kuberay_status import report_all_running


def _phase(k8s: kubernetes.client.CustomObjectsApi) -> str | None:
    status: dict[str, Any] = k8s.get_namespaced_custom_object(*SLMD, "tiny").get("status") or {}
    return status.get("phase")


def _passes(api: EmulatorThread) -> int:
    """Each pass after a RayService event starts by reading the SLMDeployment."""
    return api.count("get", "slmdeployments")


def test_the_echo_of_our_write_runs_no_pass_and_kuberays_status_does(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, settings: OperatorSettings
) -> None:
    reconciler = build_memo(settings).reconciler
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    reconciler.reconcile({"metadata": {"namespace": "default", "name": "tiny"}})
    created = rays(k8s)
    before = _passes(api)
    reconciler.rayservice_changed("default", "tiny", created)  # the ADDED event of our create
    assert _passes(api) == before
    report_all_running(k8s, "tiny")  # KubeRay: every application RUNNING
    reconciler.rayservice_changed("default", "tiny", rays(k8s))
    assert _passes(api) == before + 1
    assert _phase(k8s) == "Ready"
    reconciler.close()


def test_a_write_that_lost_a_race_to_kuberay_is_not_taken_for_an_echo(
    api: EmulatorThread,
    k8s: kubernetes.client.CustomObjectsApi,
    settings: OperatorSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KubeRay writes the RayService's status between the pass's read and its PUT: the PUT gets 409, the
    pass re-reads and writes again. The object written then carries a status the pass did not decide
    on, so its echo must run a pass."""
    reconciler = build_memo(settings).reconciler
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    reconciler.reconcile({"metadata": {"namespace": "default", "name": "tiny"}})
    kube_api = reconciler.api
    replace = kube_api.replace_rayservice
    raced: list[bool] = []

    def replace_after_kuberay(body: dict[str, Any]) -> dict[str, Any]:
        if not raced:  # the first PUT: KubeRay's status write lands just before it
            raced.append(True)
            report_all_running(k8s, "tiny")
        return replace(body)

    monkeypatch.setattr(kube_api, "replace_rayservice", replace_after_kuberay)
    k8s.patch_namespaced_custom_object(*SLMD, "tiny", {"spec": {"autoscaling": {"maxReplicas": 3}}})
    reconciler.reconcile({"metadata": {"namespace": "default", "name": "tiny"}})
    assert raced and api.count("update", "rayservices") == 2  # the first PUT got 409, the second went through
    written = rays(k8s)
    assert "max_replicas: 3\n" in written["spec"]["serveConfigV2"]
    assert _phase(k8s) != "Ready"  # the pass decided on the status it read, before KubeRay's
    before = _passes(api)
    reconciler.rayservice_changed("default", "tiny", written)
    assert _passes(api) == before + 1
    assert _phase(k8s) == "Ready"
    reconciler.close()
