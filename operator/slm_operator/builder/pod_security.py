"""Hardening of the Ray pod templates the RayService carries, to the Pod Security "restricted" profile.

Pure: a pod spec in, a hardened copy out. Every Ray pod runs as Ray's image user (UID 1000, group
`users` 100, as in Ray's official images), with no privilege escalation, every capability dropped and
the container runtime's default seccomp profile; it runs under the SLMDeployment's own ServiceAccount.

Only the head mounts a service-account token: KubeRay injects the in-tree autoscaler into the head
pod, and the autoscaler calls the Kubernetes API (KubeRay binds its Role to the head's ServiceAccount,
`GetHeadGroupServiceAccountName` in KubeRay 1.7). Workers need no token.
"""

from __future__ import annotations

import copy
from typing import Any

from slm_operator.api.models import SLMDeployment
from slm_operator.builder.ownership import child_metadata

RAY_UID = 1000
"""The `ray` user of Ray's images (`rayproject/ray`, and images built on them)."""
RAY_GID = 100
"""Its primary group (`users`)."""

CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
    "runAsNonRoot": True,
}

POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RAY_UID,
    "runAsGroup": RAY_GID,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def service_account_name(deployment_name: str) -> str:
    """The ServiceAccount of an SLMDeployment's Ray pods (created by the operator, owned by the
    SLMDeployment): workload identity (IRSA, GKE Workload Identity) is bound to it, not to `default`."""
    return f"{deployment_name}-ray"


def harden_pod(pod: dict[str, Any], *, service_account: str, mounts_api_token: bool) -> dict[str, Any]:
    """`pod` (a PodSpec) with the restricted profile's settings on the pod and on every container."""
    hardened = copy.deepcopy(pod)
    hardened["serviceAccountName"] = service_account
    hardened["automountServiceAccountToken"] = mounts_api_token
    hardened["securityContext"] = {**(hardened.get("securityContext") or {}), **copy.deepcopy(POD_SECURITY_CONTEXT)}
    for key in ("initContainers", "containers"):
        for container in hardened.get(key) or []:
            container["securityContext"] = {
                **(container.get("securityContext") or {}),
                **copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
            }
    return hardened


def harden_cluster_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """A `rayClusterConfig` whose head and worker pod templates are hardened (`harden_pod`) and run
    as the SLMDeployment `name`'s ServiceAccount; only the head mounts an API token."""
    hardened = copy.deepcopy(config)
    account = service_account_name(name)
    if hardened.get("enableInTreeAutoscaling"):  # KubeRay adds the autoscaler container to the head pod
        options = hardened.setdefault("autoscalerOptions", {})
        options["securityContext"] = copy.deepcopy(CONTAINER_SECURITY_CONTEXT)
    head = hardened["headGroupSpec"]["template"]
    head["spec"] = harden_pod(head["spec"], service_account=account, mounts_api_token=True)
    for group in hardened.get("workerGroupSpecs") or []:
        group["template"]["spec"] = harden_pod(
            group["template"]["spec"], service_account=account, mounts_api_token=False
        )
    return hardened


def build_service_account(deployment: SLMDeployment) -> dict[str, Any]:
    """The Ray pods' ServiceAccount. It is granted nothing by the operator; KubeRay binds the
    autoscaler's Role (pods, rayclusters) to it. Tokens are mounted only where a pod asks for one."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": child_metadata(deployment, service_account_name(str(deployment.metadata["name"]))),
        "automountServiceAccountToken": False,
    }
