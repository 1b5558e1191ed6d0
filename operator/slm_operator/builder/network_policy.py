"""The NetworkPolicy that fences an SLMDeployment's Ray pods. Pure: never calls the API.

Ingress to the pods of one RayService (head and workers, selected by the labels the builder puts on
both), nothing else denied or opened:

| from                                  | ports                                  |
|---------------------------------------|----------------------------------------|
| the RayService's own pods             | all (GCS, raylets, object manager, …)  |
| the slm-operator pods                 | dashboard 8265, serve 8000 (golden prompts, samples) |
| the KubeRay operator pods             | dashboard 8265 (it applies serveConfigV2 there) |
| `spec.network.servingFrom` (default: the namespace; `[]`: nobody else) | serve 8000 |
| `spec.network.metricsFrom` (default: the namespace; `[]`: nobody else) | metrics 8080 |

So GCS (6379), the Ray client (10001), the dashboard and its Jobs API (8265) and every raylet port
are closed to the rest of the cluster. Egress is left open: model downloads need it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slm_operator import constants
from slm_operator.api.models import NetworkPeer, SLMDeployment
from slm_operator.builder.ownership import child_metadata, owner_labels

DASHBOARD_PORT = 8265
METRICS_PORT = 8080
"""Ray's metrics export port as KubeRay sets it (`metrics-export-port`, KubeRay 1.7 `DefaultMetricsPort`)."""
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace (Kubernetes >= 1.21): selects one namespace by name."""


@dataclass(frozen=True)
class ControlPeers:
    """Where the two operators that talk to a RayService's head run (from the operator's settings)."""

    operator_namespace: str = ""
    """Empty: any namespace (the pod labels alone select)."""
    operator_pod_labels: dict[str, str] = field(default_factory=dict)
    """Empty: the operator is not admitted (an empty selector would admit every pod)."""
    kuberay_namespace: str = ""
    kuberay_pod_labels: dict[str, str] = field(default_factory=dict)


def network_policy_name(name: str) -> str:
    return f"{name}-ray"


def build_network_policy(deployment: SLMDeployment, peers: ControlPeers) -> dict[str, Any]:
    """The NetworkPolicy for the SLMDeployment's Ray pods, owned by the SLMDeployment when it has a uid."""
    name = str(deployment.metadata["name"])
    labels = owner_labels(name)
    network = deployment.spec.network
    ingress: list[dict[str, Any]] = [{"from": [{"podSelector": _selector(labels)}]}]
    control = (
        (peers.operator_namespace, peers.operator_pod_labels, (DASHBOARD_PORT, constants.SERVE_PORT)),
        (peers.kuberay_namespace, peers.kuberay_pod_labels, (DASHBOARD_PORT,)),
    )
    for peer_namespace, pod_labels, ports in control:
        if pod_labels:  # without labels the peer would be every pod (of every namespace)
            ingress.append({"from": [_pods_in(peer_namespace, pod_labels)], "ports": _tcp(*ports)})
    for configured, port in ((network.serving_from, constants.SERVE_PORT), (network.metrics_from, METRICS_PORT)):
        sources = _peers(configured)
        if sources:  # a rule with no `from` would admit every source: an empty list closes the port instead
            ingress.append({"from": sources, "ports": _tcp(port)})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(deployment, network_policy_name(name)),
        "spec": {"podSelector": _selector(labels), "policyTypes": ["Ingress"], "ingress": ingress},
    }


def _pods_in(namespace: str, pod_labels: dict[str, str]) -> dict[str, Any]:
    namespaces = _selector({NAMESPACE_NAME_LABEL: namespace} if namespace else {})
    return {"namespaceSelector": namespaces, "podSelector": _selector(pod_labels)}


def _selector(labels: dict[str, str]) -> dict[str, Any]:
    """A label selector as the API server returns it (an empty matchLabels is omitted)."""
    return {"matchLabels": dict(labels)} if labels else {}


def _peers(configured: list[NetworkPeer] | None) -> list[dict[str, Any]]:
    """The user's peers; unset means every pod of the SLMDeployment's own namespace, empty means none."""
    if configured is None:
        return [{"podSelector": {}}]
    return [
        {
            key: _selector(selector.match_labels)
            for key, selector in (("podSelector", peer.pod_selector), ("namespaceSelector", peer.namespace_selector))
            if selector is not None
        }
        for peer in configured
    ]


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]
