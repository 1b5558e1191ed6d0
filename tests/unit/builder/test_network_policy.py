"""The NetworkPolicy builder: valid for the API server, and admitting exactly who the design says.

`admits` evaluates a NetworkPolicy the way Kubernetes defines it (networking.k8s.io/v1: a connection to
a selected pod is allowed when some ingress rule's `from` matches the source and its `ports` the port;
a rule without `from` matches every source, without `ports` every port), so the tests read as
"who may reach which port" rather than as a copy of the builder's dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from slm_operator.api.models import SLMDeployment
from slm_operator.api.validation import parse_deployment
from slm_operator.builder.network_policy import ControlPeers, build_network_policy
from tests.conftest import EXAMPLES

PEERS = ControlPeers(
    operator_namespace="slm-system",
    operator_pod_labels={"app.kubernetes.io/name": "slm-operator"},
    kuberay_namespace="ray-system",
    kuberay_pod_labels={"app.kubernetes.io/name": "kuberay-operator"},
)
CONTROL_PORTS = (6379, 8265, 10001, 52365)


@dataclass(frozen=True)
class Source:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _peer_matches(peer: dict[str, Any], source: Source, policy_namespace: str) -> bool:
    namespace_labels = {"kubernetes.io/metadata.name": source.namespace, **source.namespace_labels}
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], namespace_labels):
            return False
    elif source.namespace != policy_namespace:
        return False
    return _matches(peer.get("podSelector") or {}, source.labels) if "podSelector" in peer else True


def admits(policy: dict[str, Any], source: Source, port: int) -> bool:
    namespace = policy["metadata"]["namespace"]
    for rule in policy["spec"].get("ingress") or []:
        peers = rule.get("from")
        if peers is not None and not any(_peer_matches(p, source, namespace) for p in peers):
            continue
        ports = rule.get("ports")
        if ports is None or any(p["port"] == port for p in ports):
            return True
    return False


def _deployment(path: Path = EXAMPLES / "tiny.yaml", network: dict[str, Any] | None = None) -> SLMDeployment:
    obj = yaml.safe_load(path.read_text())
    obj["metadata"].update(namespace="team-a", uid="1234-5678")
    if network is not None:
        obj["spec"]["network"] = network
    return parse_deployment(obj)


OWN_POD = Source("team-a", {"slm.dev/name": "tiny", "app.kubernetes.io/managed-by": "slm-operator"})
NEIGHBOUR = Source("team-a", {"app": "client"})
OTHER_TENANT = Source("team-b", {"app": "client"})
OPERATOR = Source("slm-system", {"app.kubernetes.io/name": "slm-operator"})
KUBERAY = Source("ray-system", {"app.kubernetes.io/name": "kuberay-operator"})
INGRESS = Source("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_policy_is_valid_for_the_api_server_and_owned(path: Path) -> None:
    policy = build_network_policy(_deployment(path), PEERS)
    kubernetes_validate.validate(policy, kubernetes_validate.latest_version(), strict=True)
    (owner,) = policy["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("SLMDeployment", "1234-5678", True)
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress stays open: model downloads


def test_ray_control_ports_are_closed_to_everyone_but_the_cluster_itself() -> None:
    policy = build_network_policy(_deployment(), PEERS)
    for port in CONTROL_PORTS:
        assert admits(policy, OWN_POD, port)
        for outsider in (NEIGHBOUR, OTHER_TENANT, INGRESS):
            assert not admits(policy, outsider, port), (outsider, port)
    assert admits(policy, OPERATOR, 8265) and admits(policy, KUBERAY, 8265)
    assert not admits(policy, OPERATOR, 6379) and not admits(policy, KUBERAY, 10001)
    # The operator's labels in another namespace are not the operator.
    assert not admits(policy, Source("team-b", OPERATOR.labels), 8265)


def test_openai_and_metrics_ports_default_to_the_namespace() -> None:
    policy = build_network_policy(_deployment(), PEERS)
    for port in (8000, 8080):
        assert admits(policy, NEIGHBOUR, port)
        assert not admits(policy, OTHER_TENANT, port) and not admits(policy, INGRESS, port)
    assert admits(policy, OPERATOR, 8000) and not admits(policy, KUBERAY, 8000)
    assert not admits(policy, OPERATOR, 8080)  # the operator reads the router, never Ray's metrics


def test_serving_can_be_opened_to_an_ingress_controller_and_metrics_to_prometheus() -> None:
    network = {
        "servingFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}, "podSelector": {}}
        ],
    }
    policy = build_network_policy(_deployment(network=network), PEERS)
    kubernetes_validate.validate(policy, kubernetes_validate.latest_version(), strict=True)
    assert admits(policy, INGRESS, 8000) and not admits(policy, INGRESS, 8080)
    assert not admits(policy, NEIGHBOUR, 8000)  # listing peers replaces the namespace default
    assert admits(policy, Source("monitoring", {"app": "prometheus"}), 8080)
    assert admits(policy, OPERATOR, 8000)  # golden prompts still get through


def test_an_empty_list_closes_the_port_instead_of_opening_it() -> None:
    policy = build_network_policy(_deployment(network={"servingFrom": [], "metricsFrom": []}), PEERS)
    assert all("from" in rule for rule in policy["spec"]["ingress"])  # no rule admits every source
    assert not admits(policy, NEIGHBOUR, 8000) and not admits(policy, OTHER_TENANT, 8080)
    assert admits(policy, OPERATOR, 8000) and admits(policy, OWN_POD, 8000)


def test_unknown_operator_namespaces_match_on_pod_labels_only() -> None:
    policy = build_network_policy(_deployment(), ControlPeers(operator_pod_labels={"app": "slm-operator"}))
    assert admits(policy, Source("anywhere", {"app": "slm-operator"}), 8265)
    assert not admits(policy, Source("anywhere", {"app": "other"}), 8265)
