"""SLMDeployment → the desired KubeRay `ray.io/v1` RayService. Pure: never calls the API.

Revisions change only `serveConfigV2` (and add a worker group when a revision needs another pod
shape), which KubeRay applies to the running cluster in place: a canary never doubles the GPUs the way
a new RayCluster would.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from slm_operator import constants
from slm_operator.api import models
from slm_operator.api.models import RevisionStatus, RevisionTemplate, SLMDeployment
from slm_operator.builder.revisions import live_revisions
from slm_operator.builder.serve_config import build_serve_config

RAYSERVICE_API_VERSION = "ray.io/v1"
RAYSERVICE_KIND = "RayService"
HEAD_RESOURCES = {"cpu": "2", "memory": "8Gi"}
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
"""Node label set by NVIDIA GPU Feature Discovery; resources.acceleratorType selects on it."""


def endpoint_url(name: str, namespace: str) -> str:
    """In-cluster URL of the OpenAI API (KubeRay's serve Service `<name>-serve-svc`)."""
    return f"http://{name}-serve-svc.{namespace}.svc:{constants.SERVE_PORT}/v1"


def build_rayservice(deployment: SLMDeployment, *, pin_digest: str | None = None) -> dict[str, Any]:
    """The RayService that serves every live revision of the SLMDeployment (`pin_digest`: see
    `build_serve_config`)."""
    meta = deployment.metadata
    name, namespace = str(meta["name"]), str(meta.get("namespace") or "default")
    spec = deployment.spec
    revisions = live_revisions(spec, deployment.status)
    serve_config = build_serve_config(spec, deployment.status, pin_digest=pin_digest)
    stable = next((r.name for r in revisions if r.role == "stable"), revisions[0].name)
    labels = {constants.LABEL_NAME: name, constants.LABEL_MANAGED_BY: constants.MANAGED_BY_VALUE}
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": {
            constants.ANNOTATION_REVISIONS: ",".join(r.name for r in revisions),
            constants.ANNOTATION_STABLE_REVISION: stable,
        },
    }
    if meta.get("uid"):
        metadata["ownerReferences"] = [
            {
                "apiVersion": models.API_VERSION,
                "kind": models.KIND,
                "name": name,
                "uid": str(meta["uid"]),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "apiVersion": RAYSERVICE_API_VERSION,
        "kind": RAYSERVICE_KIND,
        "metadata": metadata,
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config.to_document(), sort_keys=False),
            "rayClusterConfig": build_ray_cluster_config(deployment, revisions, labels),
        },
    }


def build_ray_cluster_config(
    deployment: SLMDeployment, revisions: list[RevisionStatus], labels: dict[str, str]
) -> dict[str, Any]:
    spec = deployment.spec
    return {
        "rayVersion": spec.ray_version,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"upscalingMode": "Default", "idleTimeoutSeconds": 60},
        "headGroupSpec": {
            # The head schedules no replicas (num-cpus 0): it runs the controller and the proxy.
            "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "ray-head",
                            "image": spec.ray_image,
                            "resources": {"requests": dict(HEAD_RESOURCES), "limits": dict(HEAD_RESOURCES)},
                            "ports": [
                                {"containerPort": 6379, "name": "gcs-server"},
                                {"containerPort": 8265, "name": "dashboard"},
                                {"containerPort": 10001, "name": "client"},
                                {"containerPort": constants.SERVE_PORT, "name": "serve"},
                            ],
                        }
                    ]
                },
            },
        },
        "workerGroupSpecs": build_worker_groups(deployment, revisions, labels),
    }


def worker_group_name(template: RevisionTemplate) -> str:
    """Worker groups are keyed by pod shape, so revisions of the same shape share GPU workers."""
    shape = json.dumps(_pod_shape(template), sort_keys=True)
    kind = "gpu" if template.gpus_per_replica else "cpu"
    return f"{kind}-{hashlib.sha256(shape.encode()).hexdigest()[:8]}"


def build_worker_groups(
    deployment: SLMDeployment, revisions: list[RevisionStatus], labels: dict[str, str]
) -> list[dict[str, Any]]:
    spec = deployment.spec
    budget = spec.autoscaling.max_replicas + spec.rollout.max_surge_replicas
    groups: dict[str, dict[str, Any]] = {}
    for revision in revisions:
        group = worker_group_name(revision.template)
        if group in groups:
            continue
        groups[group] = {
            "groupName": group,
            "replicas": spec.autoscaling.min_replicas,
            "minReplicas": 0,
            "maxReplicas": budget,
            "rayStartParams": {},
            "template": {
                "metadata": {"labels": labels},
                "spec": _worker_pod_spec(deployment, revision.template),
            },
        }
    return list(groups.values())


def _pod_shape(template: RevisionTemplate) -> dict[str, Any]:
    return {
        "gpus": template.gpus_per_replica,
        "accelerator": template.accelerator_type,
        "cpu": str(template.cpu),
        "memory": str(template.memory),
        "pvcs": sorted(_pvc_claims(template)),
    }


def _pvc_claims(template: RevisionTemplate) -> set[str]:
    sources = [template.model.source, *(a.source for a in template.adapters)]
    return {s.removeprefix("pvc://").split("/", 1)[0] for s in sources if s.startswith("pvc://")}


def _worker_pod_spec(deployment: SLMDeployment, template: RevisionTemplate) -> dict[str, Any]:
    spec = deployment.spec
    resources: dict[str, Any] = {"cpu": str(template.cpu), "memory": str(template.memory)}
    if template.gpus_per_replica:
        resources["nvidia.com/gpu"] = str(template.gpus_per_replica)
    container: dict[str, Any] = {
        "name": "ray-worker",
        "image": spec.ray_image,
        "resources": {"requests": dict(resources), "limits": dict(resources)},
    }
    secret = spec.model.credentials_secret_ref
    if secret is not None:
        container["envFrom"] = [{"secretRef": {"name": secret.name}}]
    pod: dict[str, Any] = {"containers": [container]}
    claims = sorted(_pvc_claims(template))
    if claims:
        container["volumeMounts"] = [
            {"name": f"model-{i}", "mountPath": f"{constants.PVC_MOUNT_ROOT}/{claim}", "readOnly": True}
            for i, claim in enumerate(claims)
        ]
        pod["volumes"] = [
            {"name": f"model-{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
            for i, claim in enumerate(claims)
        ]
    node_selector = dict(spec.resources.node_selector)
    if template.accelerator_type:
        node_selector.setdefault(GPU_PRODUCT_LABEL, template.accelerator_type)
    if node_selector:
        pod["nodeSelector"] = node_selector
    if spec.resources.tolerations:
        pod["tolerations"] = [
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in spec.resources.tolerations
        ]
    return pod
