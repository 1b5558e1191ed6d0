"""Which Ray cluster the RayService asks for, and when a cluster upgrade may start (pure).

Revisions never need a new Ray cluster: their worker groups are appended (`builder.worker_groups`).
What only a new cluster can apply is the cluster itself: `rayImage` (every pod's image),
`rayVersion` and `frontEnd` (in every Ray container's environment). Such a change is a *cluster
upgrade*: KubeRay builds a complete second RayCluster and switches over when it is ready, so while
both run every replica's GPUs are needed twice. It never happens silently: it shows as
`status.cluster.pendingUpgrade` and the `ClusterUpgrade` condition (with the extra GPUs), is posted
as an Event, and starts only when the spec allows it (`spec.clusterUpgrade.approval`: Automatic, or
Manual and approved by annotating the SLMDeployment with `slm.dev/approve-cluster-upgrade=<id>`) and
no canary is live. The RayService it writes then declares the upgrade
(`slm.dev/cluster-upgrade=<id>`), and the worker groups are compacted to those the live revisions use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from slm_operator.api.models import (
    ClusterStatus,
    ConditionType,
    PendingClusterUpgrade,
    SLMDeployment,
    SLMDeploymentSpec,
    SLMDeploymentStatus,
)
from slm_operator.builder.cluster_change import cluster_spec_hash
from slm_operator.builder.rayservice import build_ray_cluster_config, current_cluster, rayservice_labels
from slm_operator.builder.revisions import live_revisions
from slm_operator.builder.worker_groups import grow_worker_groups
from slm_operator.constants import ANNOTATION_APPROVE_CLUSTER_UPGRADE
from slm_operator.rollout.actions import EmitEvent
from slm_operator.rollout.conditions import find_condition, format_time, set_condition


class UpgradeReason:
    AWAITING_APPROVAL = "AwaitingApproval"
    WAITING_FOR_ROLLOUT = "WaitingForRollout"
    UPGRADING = "Upgrading"
    UPGRADED = "Upgraded"


@dataclass(frozen=True)
class ClusterPlan:
    status: SLMDeploymentStatus
    """The status with `cluster` and the `ClusterUpgrade` condition brought up to date."""
    events: tuple[EmitEvent, ...] = ()
    approval_used: bool = False
    """The approval annotation was acted upon: the shell removes it."""


def plan_cluster(
    spec: SLMDeploymentSpec,
    status: SLMDeploymentStatus,
    *,
    name: str,
    approval: str | None,
    kuberay_upgrading: bool,
    now: datetime,
    generation: int,
) -> ClusterPlan:
    """`status` (as `rollout.decide` left it) with the cluster to ask KubeRay for.

    `approval`: the value of the approve annotation; `kuberay_upgrading`: KubeRay reports a pending
    RayCluster (`status.pendingServiceStatus.rayClusterName`)."""
    cluster = current_cluster(spec, status)
    wanted = (spec.ray_version, spec.ray_image, spec.front_end)
    if wanted == (cluster.ray_version, cluster.ray_image, cluster.front_end):
        return _up_to_date(status, cluster, kuberay_upgrading, now, generation)
    revisions = live_revisions(spec, status)
    target = ClusterStatus(
        ray_version=spec.ray_version,
        ray_image=spec.ray_image,
        front_end=spec.front_end,
        worker_groups=grow_worker_groups([], revisions),
    )
    config = build_ray_cluster_config(spec, target, revisions, rayservice_labels(name))
    upgrade_id = cluster_spec_hash(config)[:10].lower()
    pending = PendingClusterUpgrade(
        id=upgrade_id,
        reason=_what_changes(cluster, target),
        extra_gpus=extra_gpus(spec, status),
        ray_version=target.ray_version,
        ray_image=target.ray_image,
        front_end=target.front_end,
    )
    approved = spec.cluster_upgrade.approval == "Automatic" or approval == upgrade_id
    if approved and status.canary_revision is None:
        message = (
            f"cluster upgrade {upgrade_id} ({pending.reason}): KubeRay builds a new Ray cluster and switches "
            f"over when it is ready; {pending.extra_gpus} extra GPUs until then"
        )
        upgraded = target.model_copy(update={"upgrade_id": upgrade_id})
        return ClusterPlan(
            _with(status, upgraded, "True", UpgradeReason.UPGRADING, message, now, generation),
            (EmitEvent("Normal", "ClusterUpgradeStarted", message),),
            approval_used=approval == upgrade_id,
        )
    if approved:
        reason, wait = UpgradeReason.WAITING_FOR_ROLLOUT, "starts once the rollout of the canary ends"
    else:
        reason = UpgradeReason.AWAITING_APPROVAL
        wait = f"approve with: kubectl annotate slmd {name} {ANNOTATION_APPROVE_CLUSTER_UPGRADE}={upgrade_id}"
    message = (
        f"cluster upgrade {upgrade_id} pending ({pending.reason}): a new Ray cluster, "
        f"{pending.extra_gpus} extra GPUs while both run; {wait}"
    )
    known = cluster.pending_upgrade is not None and cluster.pending_upgrade.id == upgrade_id
    events = () if known else (EmitEvent("Warning", "ClusterUpgradePending", message),)
    waiting = cluster.model_copy(update={"pending_upgrade": pending})
    return ClusterPlan(_with(status, waiting, "True", reason, message, now, generation), events)


def plan_deployment_cluster(
    deployment: SLMDeployment,
    status: SLMDeploymentStatus,
    rayservice: dict[str, Any] | None,
    *,
    now: datetime,
    generation: int,
) -> ClusterPlan:
    """`plan_cluster` with its inputs read from the SLMDeployment (approval annotation) and the
    RayService as KubeRay last reported it."""
    annotations = deployment.metadata.get("annotations")
    approval = annotations.get(ANNOTATION_APPROVE_CLUSTER_UPGRADE) if isinstance(annotations, dict) else None
    pending = ((rayservice or {}).get("status") or {}).get("pendingServiceStatus") or {}
    return plan_cluster(
        deployment.spec,
        status,
        name=str(deployment.metadata["name"]),
        approval=str(approval) if approval is not None else None,
        kuberay_upgrading=bool(pending.get("rayClusterName")),
        now=now,
        generation=generation,
    )


def extra_gpus(spec: SLMDeploymentSpec, status: SLMDeploymentStatus) -> int:
    """GPUs the new cluster needs while the old one still runs: every live revision's replicas
    (what Serve wants now, at least minReplicas) times its GPUs per replica."""
    return sum(
        max(r.desired_replicas or 0, r.ready_replicas, spec.autoscaling.min_replicas) * r.template.gpus_per_replica
        for r in live_revisions(spec, status)
    )


def _what_changes(running: ClusterStatus, target: ClusterStatus) -> str:
    changes = []
    if running.ray_image != target.ray_image:
        changes.append(f"rayImage {running.ray_image} → {target.ray_image}")
    if running.ray_version != target.ray_version:
        changes.append(f"rayVersion {running.ray_version} → {target.ray_version}")
    if running.front_end != target.front_end:
        changes.append(f"frontEnd {running.front_end} → {target.front_end}")
    return ", ".join(changes)


def _up_to_date(
    status: SLMDeploymentStatus, cluster: ClusterStatus, kuberay_upgrading: bool, now: datetime, generation: int
) -> ClusterPlan:
    cluster = cluster.model_copy(update={"pending_upgrade": None})
    condition = find_condition(status.conditions, ConditionType.CLUSTER_UPGRADE)
    if condition is None or condition.status != "True":
        return ClusterPlan(status.model_copy(update={"cluster": cluster}))
    if condition.reason == UpgradeReason.UPGRADING and kuberay_upgrading:
        return ClusterPlan(status.model_copy(update={"cluster": cluster}))
    if condition.reason == UpgradeReason.UPGRADING:
        message = f"the Ray cluster runs {cluster.ray_image} (Ray {cluster.ray_version}, {cluster.front_end})"
        events: tuple[EmitEvent, ...] = (EmitEvent("Normal", "ClusterUpgraded", message),)
        return ClusterPlan(_with(status, cluster, "False", UpgradeReason.UPGRADED, message, now, generation), events)
    message = "the spec names the running cluster again: no cluster upgrade"
    return ClusterPlan(_with(status, cluster, "False", UpgradeReason.UPGRADED, message, now, generation))


def _with(
    status: SLMDeploymentStatus,
    cluster: ClusterStatus,
    value: Literal["True", "False"],
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> SLMDeploymentStatus:
    conditions = set_condition(
        status.conditions,
        ConditionType.CLUSTER_UPGRADE,
        value,
        reason,
        message,
        now=format_time(now),
        generation=generation,
    )
    return status.model_copy(update={"cluster": cluster, "conditions": conditions})
