"""SLMDeployment → the desired KubeRay `ray.io/v1` RayService. Pure: never calls the API.

Revisions change only `serveConfigV2` (and append a worker group when a revision needs other pod
settings), which KubeRay applies to the running cluster in place: a canary never doubles the GPUs the
way a new RayCluster would (`builder.cluster_change`). The image and Ray version come from
`status.cluster`, which changes only through a declared cluster upgrade (`builder.cluster_plan`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from slm_operator import constants
from slm_operator.api import models
from slm_operator.api.models import ClusterStatus, RevisionStatus, SLMDeployment, SLMDeploymentSpec, SLMDeploymentStatus
from slm_operator.builder.cluster_change import UPGRADE_NEW_CLUSTER
from slm_operator.builder.pod_security import harden_cluster_config
from slm_operator.builder.ray_auth import auth_options
from slm_operator.builder.revisions import live_revisions
from slm_operator.builder.serve_config import build_serve_config
from slm_operator.builder.worker_groups import build_worker_group, front_end_env, group_of, grow_worker_groups

RAYSERVICE_API_VERSION = "ray.io/v1"
RAYSERVICE_KIND = "RayService"
HEAD_RESOURCES = {"cpu": "2", "memory": "8Gi"}
SAFE_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's emitter where PyYAML has it: the pure-Python one took 15 % of the operator's CPU with 1 000 new
SLMDeployments (bench/operator_scale.py). Both write the same YAML but for line breaks inside strings with
escaped characters, and serveConfigV2 is always written by the same one."""


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
    cluster = current_cluster(spec, deployment.status)
    stable = next((r.name for r in revisions if r.role == "stable"), revisions[0].name)
    labels = rayservice_labels(name)
    annotations = {
        constants.ANNOTATION_REVISIONS: ",".join(r.name for r in revisions),
        constants.ANNOTATION_STABLE_REVISION: stable,
    }
    if cluster.upgrade_id is not None:
        annotations[constants.ANNOTATION_CLUSTER_UPGRADE] = cluster.upgrade_id
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations}
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
            # Explicit, so KubeRay's own ENABLE_ZERO_DOWNTIME setting cannot turn a declared cluster
            # upgrade into a silently ignored change.
            "upgradeStrategy": {"type": UPGRADE_NEW_CLUSTER},
            "serveConfigV2": yaml.dump(serve_config.to_document(), Dumper=SAFE_DUMPER, sort_keys=False),
            "rayClusterConfig": harden_cluster_config(
                {
                    **build_ray_cluster_config(spec, cluster, revisions, labels),
                    "authOptions": auth_options(name, str(meta["uid"]) if meta.get("uid") else None),
                },
                name,
            ),
        },
    }


def build_ray_cluster_config(
    spec: SLMDeploymentSpec, cluster: ClusterStatus, revisions: Sequence[RevisionStatus], labels: dict[str, str]
) -> dict[str, Any]:
    """The Ray cluster of `cluster` (image, Ray version, worker groups in their recorded order): a
    group that no live revision uses keeps its place with 0 replicas."""
    used = {group_of(cluster.worker_groups, r.template).name for r in revisions}
    return {
        "rayVersion": cluster.ray_version,
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
                            "image": cluster.ray_image,
                            **({"env": env} if (env := front_end_env(cluster.front_end)) else {}),
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
        "workerGroupSpecs": [
            build_worker_group(
                group,
                replicas=spec.autoscaling.min_replicas if group.name in used else 0,
                image=cluster.ray_image,
                front_end=cluster.front_end,
                labels=labels,
            )
            for group in cluster.worker_groups
        ],
    }


def rayservice_labels(name: str) -> dict[str, str]:
    return {constants.LABEL_NAME: name, constants.LABEL_MANAGED_BY: constants.MANAGED_BY_VALUE}


def current_cluster(spec: SLMDeploymentSpec, status: SLMDeploymentStatus | None) -> ClusterStatus:
    """The cluster recorded in status (the spec's image and Ray version before there is one), with a
    worker group appended for each live revision whose pod settings have none yet."""
    revisions = live_revisions(spec, status)
    recorded = status.cluster if status is not None else None
    if recorded is None:
        recorded = ClusterStatus(ray_version=spec.ray_version, ray_image=spec.ray_image, front_end=spec.front_end)
    return recorded.model_copy(update={"worker_groups": grow_worker_groups(recorded.worker_groups, revisions)})
