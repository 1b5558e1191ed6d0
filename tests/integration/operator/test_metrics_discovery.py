"""Where the operator scrapes the router's metrics: one endpoint per Running pod of the RayService.

Routers run in the stable revision's replicas and in the router application's, on any Ray node, so
the head's metrics agent alone does not see them all. The pods are listed through the real
`kubernetes` client against the API emulator (no cluster here: the emulator stands in for the API
server, and the pods are objects it stores).
"""

from __future__ import annotations

from typing import Any

import kubernetes

from slm_operator import constants
from slm_operator.kube import KubeApi
from slm_operator.probes import expand_metrics_urls
from slm_operator.settings import OperatorSettings
from tests.harness.emulator import EmulatorThread


def _pod(name: str, labels: dict[str, str], phase: str, ip: str | None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if ip:
        status["podIP"] = ip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "ray", "image": "rayproject/ray"}]},
        "status": status,
    }


def test_metrics_urls_cover_every_running_pod_of_the_deployment(api: EmulatorThread) -> None:
    ours = {constants.LABEL_NAME: "tiny", constants.LABEL_MANAGED_BY: constants.MANAGED_BY_VALUE}
    client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=api.url))
    core = kubernetes.client.CoreV1Api(client)
    for pod in (
        _pod("tiny-head", ours, "Running", "10.0.0.7"),
        _pod("tiny-gpu-worker-a", ours, "Running", "10.0.1.12"),
        _pod("tiny-gpu-worker-b", ours, "Running", "fd00::5"),
        _pod("tiny-gpu-worker-c", ours, "Pending", None),
        _pod("tiny-old-worker", ours, "Succeeded", "10.0.1.2"),
        _pod("other-head", {**ours, constants.LABEL_NAME: "other"}, "Running", "10.0.2.3"),
        _pod("unmanaged", {constants.LABEL_NAME: "tiny"}, "Running", "10.0.3.4"),
    ):
        core.create_namespaced_pod("default", pod)

    kube = KubeApi(client, OperatorSettings(kube_server=api.url))
    selector = f"{constants.LABEL_NAME}=tiny,{constants.LABEL_MANAGED_BY}={constants.MANAGED_BY_VALUE}"
    ips = kube.list_running_pod_ips("default", selector)
    assert ips == ["10.0.0.7", "10.0.1.12", "fd00::5"]
    template = OperatorSettings().metrics_url_template
    assert expand_metrics_urls(template, "tiny", "default", ips) == [
        "http://10.0.0.7:8080/metrics",
        "http://10.0.1.12:8080/metrics",
        "http://[fd00::5]:8080/metrics",
    ]
