"""Every Ray pod the operator asks KubeRay for passes the Pod Security "restricted" profile, and the
checker that says so rejects what the admission controller rejects."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from slm_operator.api.models import SLMDeployment
from slm_operator.api.validation import parse_deployment
from slm_operator.builder.pod_security import RAY_UID, harden_pod
from slm_operator.builder.rayservice import build_rayservice
from tests.conftest import EXAMPLES
from tests.harness.pod_security import kuberay_pod_specs, restricted_violations
from tests.unit.builder.test_builders import _with_canary

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))

GOOD_POD: dict[str, Any] = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [
        {
            "name": "app",
            "image": "busybox",
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }
    ],
    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "models"}}],
}


def _load(path: Path) -> SLMDeployment:
    obj = yaml.safe_load(path.read_text())
    obj["metadata"].setdefault("namespace", "default")
    obj["metadata"]["uid"] = "6f1e2d3c-aaaa-bbbb-cccc-0123456789ab"
    return parse_deployment(obj)


def _bad(change: str) -> dict[str, Any]:
    pod = copy.deepcopy(GOOD_POD)
    container = pod["containers"][0]
    match change:
        case "no securityContext":  # what the builder rendered before hardening
            del pod["securityContext"], container["securityContext"]
        case "privileged":
            container["securityContext"]["privileged"] = True
        case "escalation allowed":
            del container["securityContext"]["allowPrivilegeEscalation"]
        case "capability kept":
            container["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
        case "capability added":
            container["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]
        case "root user":
            pod["securityContext"]["runAsUser"] = 0
        case "root allowed in container":
            container["securityContext"]["runAsNonRoot"] = False
        case "unconfined seccomp":
            container["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
        case "no seccomp":
            del pod["securityContext"]["seccompProfile"]
        case "hostPath":
            pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
        case "hostNetwork":
            pod["hostNetwork"] = True
        case "hostPort":
            container["ports"] = [{"containerPort": 80, "hostPort": 80}]
        case "bad init container":
            pod["initContainers"] = [{"name": "init", "image": "busybox"}]
    return pod


def test_the_known_good_pod_is_admitted() -> None:
    assert restricted_violations(GOOD_POD) == []
    with_bind = copy.deepcopy(GOOD_POD)
    with_bind["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    assert restricted_violations(with_bind) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("no securityContext", "spec.containers[0].securityContext.allowPrivilegeEscalation"),
        ("privileged", "spec.containers[0].securityContext.privileged"),
        ("escalation allowed", "spec.containers[0].securityContext.allowPrivilegeEscalation"),
        ("capability kept", "spec.containers[0].securityContext.capabilities.drop"),
        ("capability added", "spec.containers[0].securityContext.capabilities.add"),
        ("root user", "spec.securityContext.runAsUser"),
        ("root allowed in container", "spec.containers[0].securityContext.runAsNonRoot"),
        ("unconfined seccomp", "spec.containers[0].securityContext.seccompProfile.type"),
        ("no seccomp", "spec.containers[0].securityContext.seccompProfile.type"),
        ("hostPath", "spec.volumes[1]"),
        ("hostNetwork", "spec.hostNetwork"),
        ("hostPort", "spec.containers[0].ports[0].hostPort"),
        ("bad init container", "spec.initContainers[0].securityContext.allowPrivilegeEscalation"),
    ],
)
def test_known_bad_pods_are_rejected_naming_the_field(change: str, field: str) -> None:
    violations = restricted_violations(_bad(change))
    assert any(v.startswith(field) for v in violations), violations


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("canary", [False, True], ids=["stable", "canary"])
def test_every_ray_pod_of_every_example_meets_restricted(path: Path, canary: bool) -> None:
    deployment = _load(path)
    if canary:  # a canary of another pod shape adds a worker group
        deployment = _with_canary(deployment, 20, "hf://org/next-model")
    pods = kuberay_pod_specs(build_rayservice(deployment))
    assert len(pods) >= 2  # the head and at least one worker group
    for group, pod in pods.items():
        assert restricted_violations(pod) == [], group


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_ray_pods_run_as_the_deployments_account_and_only_the_head_mounts_a_token(path: Path) -> None:
    deployment = _load(path)
    pods = kuberay_pod_specs(build_rayservice(deployment))
    name = deployment.metadata["name"]
    assert {pod["serviceAccountName"] for pod in pods.values()} == {f"{name}-ray"}
    assert pods.pop("head")["automountServiceAccountToken"] is True  # KubeRay's autoscaler calls the API
    assert all(pod["automountServiceAccountToken"] is False for pod in pods.values())
    for pod in pods.values():
        assert pod["securityContext"]["runAsUser"] == RAY_UID
        assert all("envFrom" not in c for c in pod["containers"])


def test_hardening_overrides_what_would_loosen_it() -> None:
    loose = {
        "securityContext": {"runAsUser": 0},
        "containers": [{"name": "c", "securityContext": {"privileged": True}}],
    }
    assert restricted_violations(harden_pod(loose, service_account="sa", mounts_api_token=False)) == []
