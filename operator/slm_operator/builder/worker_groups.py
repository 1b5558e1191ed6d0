"""KubeRay worker groups that only grow (pure).

A group is one pod template: the pod settings of the revisions it serves (`WorkerPodSettings`).
KubeRay updates a running Ray cluster in place only when worker groups are appended at the end
(`builder.cluster_change`), so the groups are kept in the order first seen, recorded in
`status.cluster.workerGroups`; a group no live revision uses stays in place with 0 replicas (Ray's
autoscaler removes its idle pods). Only a cluster upgrade, which builds a new cluster anyway,
compacts them to the groups the live revisions use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from slm_operator import constants
from slm_operator.api.models import RevisionStatus, RevisionTemplate, WorkerGroupStatus, WorkerPodSettings
from slm_operator.builder.credentials import credential_env, credential_keys
from slm_serving.config import FRONT_END_ENV, FrontEnd

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
"""Node label set by NVIDIA GPU Feature Discovery; resources.acceleratorType selects on it."""
WORKER_GROUP_MAX_REPLICAS = 1000 + 100
"""Pods per group: the most replicas a spec may ask for (autoscaling.maxReplicas ≤ 1000 plus
rollout.maxSurgeReplicas ≤ 100). Fixed, because KubeRay never applies a changed minReplicas or
maxReplicas of an existing group (kuberay#2331); the replica budget is enforced by each revision's
Serve autoscaling bounds, which Serve applies in place."""


def worker_pod_settings(template: RevisionTemplate) -> WorkerPodSettings:
    secret = template.model.credentials_secret_ref
    return WorkerPodSettings(
        gpus=template.gpus_per_replica,
        accelerator_type=template.accelerator_type,
        cpu=template.cpu,
        memory=template.memory,
        pvc_claims=sorted(_pvc_claims(template)),
        node_selector=template.node_selector,
        tolerations=template.tolerations,
        credentials_secret=secret.name if secret is not None else None,
        credential_keys=credential_keys(_sources(template)) if secret is not None else [],
    )


def worker_group_name(pod: WorkerPodSettings) -> str:
    """`gpu-`/`cpu-` and a hash of the pod settings; unset ones are left out of the hash, which keeps
    the names of groups made before node selector, tolerations and secret belonged to a revision."""
    shape: dict[str, Any] = {
        "gpus": pod.gpus,
        "accelerator": pod.accelerator_type,
        "cpu": str(pod.cpu),
        "memory": str(pod.memory),
        "pvcs": list(pod.pvc_claims),
    }
    extra = pod.model_dump(
        mode="json", by_alias=True, include={"node_selector", "tolerations", "credentials_secret", "credential_keys"}
    )
    shape.update({k: v for k, v in extra.items() if v})
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:8]
    return f"{'gpu' if pod.gpus else 'cpu'}-{digest}"


def grow_worker_groups(
    groups: Sequence[WorkerGroupStatus], revisions: Sequence[RevisionStatus]
) -> list[WorkerGroupStatus]:
    """`groups` with a group appended, in revision order, for each revision whose pod settings none has."""
    grown = list(groups)
    for revision in revisions:
        pod = worker_pod_settings(revision.template)
        if not any(g.pod == pod for g in grown):
            name = worker_group_name(pod)
            while any(g.name == name for g in grown):  # same name, other settings: never reuse a name
                name = f"{name}-{len(grown)}"
            grown.append(WorkerGroupStatus(name=name, pod=pod))
    return grown


def group_of(groups: Sequence[WorkerGroupStatus], template: RevisionTemplate) -> WorkerGroupStatus:
    pod = worker_pod_settings(template)
    return next(g for g in groups if g.pod == pod)


def front_end_env(front_end: FrontEnd) -> list[dict[str, Any]]:
    """The Ray Serve switches of `front_end`, as container `env` entries (none for Serve's own proxy,
    so a cluster built before there was a choice keeps its pod templates)."""
    return [{"name": k, "value": v} for k, v in FRONT_END_ENV[front_end].items()]


def build_worker_group(
    group: WorkerGroupStatus, *, replicas: int, image: str, front_end: FrontEnd, labels: dict[str, str]
) -> dict[str, Any]:
    return {
        "groupName": group.name,
        "replicas": replicas,
        "minReplicas": 0,
        "maxReplicas": WORKER_GROUP_MAX_REPLICAS,
        "rayStartParams": {},
        "template": {"metadata": {"labels": labels}, "spec": build_worker_pod(group.pod, image, front_end)},
    }


def build_worker_pod(pod: WorkerPodSettings, image: str, front_end: FrontEnd) -> dict[str, Any]:
    resources: dict[str, Any] = {"cpu": str(pod.cpu), "memory": str(pod.memory)}
    if pod.gpus:
        resources["nvidia.com/gpu"] = str(pod.gpus)
    container: dict[str, Any] = {
        "name": "ray-worker",
        "image": image,
        "resources": {"requests": dict(resources), "limits": dict(resources)},
    }
    env = front_end_env(front_end)
    if pod.credentials_secret is not None:
        env += credential_env(pod.credentials_secret, pod.credential_keys)
    if env:
        container["env"] = env
    spec: dict[str, Any] = {"containers": [container]}
    if pod.pvc_claims:
        container["volumeMounts"] = [
            {"name": f"model-{i}", "mountPath": f"{constants.PVC_MOUNT_ROOT}/{claim}", "readOnly": True}
            for i, claim in enumerate(pod.pvc_claims)
        ]
        spec["volumes"] = [
            {"name": f"model-{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
            for i, claim in enumerate(pod.pvc_claims)
        ]
    node_selector = dict(pod.node_selector)
    if pod.accelerator_type:
        node_selector.setdefault(GPU_PRODUCT_LABEL, pod.accelerator_type)
    if node_selector:
        spec["nodeSelector"] = node_selector
    if pod.tolerations:
        spec["tolerations"] = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in pod.tolerations]
    return spec


def _pvc_claims(template: RevisionTemplate) -> set[str]:
    return {s.removeprefix("pvc://").split("/", 1)[0] for s in _sources(template) if s.startswith("pvc://")}


def _sources(template: RevisionTemplate) -> list[str]:
    """Where the revision's weights come from: the model, then each adapter."""
    return [template.model.source, *(a.source for a in template.adapters)]
