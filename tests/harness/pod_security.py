"""A checker of the Pod Security Standards' "restricted" profile, and the pods KubeRay makes.

`restricted_violations(pod_spec)` encodes the checks of Kubernetes' Pod Security admission
(`k8s.io/pod-security-admission/policy`, policy version v1.34, as published at
https://kubernetes.io/docs/concepts/security/pod-security-standards/): every baseline check, plus the
restricted ones (volume types, privilege escalation, running as non-root, non-zero UID, seccomp,
capabilities). Each message names the field that fails, as the admission controller does. No
maintained PyPI package runs these rules offline (the real ones are Go code inside the API server),
hence this stand-in; `tests/unit/builder/test_pod_security.py` holds it to known-good and known-bad
pods.

`kuberay_pod_specs(rayservice)` adds to the builder's pod templates what KubeRay 1.7 adds when it
makes the pods (`ray-operator/controllers/ray/common/pod.go`): the autoscaler sidecar in the head
(security context from `autoscalerOptions.securityContext`, none otherwise) and the `wait-gcs-ready`
init container in workers (the Ray container's security context, copied).
"""

from __future__ import annotations

import copy
from typing import Any

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
CONTAINER_KINDS = ("initContainers", "containers", "ephemeralContainers")


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Every reason the restricted profile rejects the PodSpec `pod`; empty when it is admitted."""
    return _baseline(pod) + _restricted(pod)


def _containers(pod: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"spec.{kind}[{i}]", c) for kind in CONTAINER_KINDS for i, c in enumerate(pod.get(kind) or [])]


def _baseline(pod: dict[str, Any]) -> list[str]:
    out: list[str] = []
    psc = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            out.append(f"spec.{field}: must not be true")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("spec.securityContext.windowsOptions.hostProcess: must not be true")
    for i, volume in enumerate(pod.get("volumes") or []):
        if "hostPath" in volume:
            out.append(f"spec.volumes[{i}].hostPath: hostPath volumes are forbidden")
    for i, sysctl in enumerate(psc.get("sysctls") or []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"spec.securityContext.sysctls[{i}]: {sysctl.get('name')} is not a safe sysctl")
    out += _selinux("spec.securityContext", psc)
    out += _seccomp_not_unconfined("spec.securityContext", psc)
    out += _apparmor("spec.securityContext", psc)
    for path, container in _containers(pod):
        sc = container.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"{path}.securityContext.privileged: must not be true")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{path}.securityContext.windowsOptions.hostProcess: must not be true")
        for cap in (sc.get("capabilities") or {}).get("add") or []:
            if cap not in BASELINE_CAPABILITIES:
                out.append(f"{path}.securityContext.capabilities.add: {cap} is not allowed")
        for j, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                out.append(f"{path}.ports[{j}].hostPort: must be unset or 0")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{path}.securityContext.procMount: must be Default")
        out += _selinux(f"{path}.securityContext", sc)
        out += _seccomp_not_unconfined(f"{path}.securityContext", sc)
        out += _apparmor(f"{path}.securityContext", sc)
    return out


def _restricted(pod: dict[str, Any]) -> list[str]:
    out: list[str] = []
    psc = pod.get("securityContext") or {}
    for i, volume in enumerate(pod.get("volumes") or []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            out.append(f"spec.volumes[{i}]: volume type {sorted(kinds - RESTRICTED_VOLUME_TYPES)} is not allowed")
    if psc.get("runAsUser") == 0:
        out.append("spec.securityContext.runAsUser: must not be 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    for path, container in _containers(pod):
        sc = container.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{path}.securityContext.allowPrivilegeEscalation: must be false")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            out.append(f"{path}.securityContext.runAsNonRoot: must be true (here or in spec.securityContext)")
        if sc.get("runAsUser") == 0:
            out.append(f"{path}.securityContext.runAsUser: must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{path}.securityContext.seccompProfile.type: must be RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{path}.securityContext.capabilities.drop: must include ALL")
        for cap in caps.get("add") or []:
            if cap != "NET_BIND_SERVICE":
                out.append(f"{path}.securityContext.capabilities.add: only NET_BIND_SERVICE may be added, not {cap}")
    return out


def _selinux(path: str, sc: dict[str, Any]) -> list[str]:
    options = sc.get("seLinuxOptions") or {}
    out = []
    if options.get("type", "") not in SELINUX_TYPES:
        out.append(f"{path}.seLinuxOptions.type: {options['type']} is not allowed")
    for field in ("user", "role"):
        if options.get(field):
            out.append(f"{path}.seLinuxOptions.{field}: must be unset")
    return out


def _seccomp_not_unconfined(path: str, sc: dict[str, Any]) -> list[str]:
    if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        return [f"{path}.seccompProfile.type: must not be Unconfined"]
    return []


def _apparmor(path: str, sc: dict[str, Any]) -> list[str]:
    kind = (sc.get("appArmorProfile") or {}).get("type")
    if kind not in (None, "RuntimeDefault", "Localhost"):
        return [f"{path}.appArmorProfile.type: must be RuntimeDefault or Localhost"]
    return []


def kuberay_pod_specs(rayservice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pod specs KubeRay 1.7 makes from a RayService, by group (`head`, then each worker group)."""
    config = rayservice["spec"]["rayClusterConfig"]
    head = copy.deepcopy(config["headGroupSpec"]["template"]["spec"])
    if config.get("enableInTreeAutoscaling"):
        autoscaler: dict[str, Any] = {"name": "autoscaler", "image": head["containers"][0]["image"]}
        context = (config.get("autoscalerOptions") or {}).get("securityContext")
        if context is not None:
            autoscaler["securityContext"] = copy.deepcopy(context)
        head["containers"].append(autoscaler)
    pods = {"head": head}
    for group in config.get("workerGroupSpecs") or []:
        worker = copy.deepcopy(group["template"]["spec"])
        ray = worker["containers"][0]
        init: dict[str, Any] = {"name": "wait-gcs-ready", "image": ray["image"]}
        if "securityContext" in ray:
            init["securityContext"] = copy.deepcopy(ray["securityContext"])
        worker["initContainers"] = [init, *(worker.get("initContainers") or [])]
        pods[group["groupName"]] = worker
    return pods
