"""What KubeRay does with a changed `rayClusterConfig` of a RayService (pure): nothing, update the
running RayCluster in place, or build a complete new RayCluster beside it.

Follows KubeRay's RayService controller, v1.5.2, v1.6.2 and v1.7.0 alike
(`ray-operator/controllers/ray/rayservice_controller.go`: `shouldPrepareNewCluster`,
`shouldUpdateCluster`, `isClusterSpecHashEqual`; `utils/util.go`:
`GenerateHashWithoutReplicasAndWorkersToDelete`):

- KubeRay hashes the cluster spec with `suspend`, every worker group's `replicas`, `minReplicas`,
  `maxReplicas`, `scaleStrategy.workersToDelete`, the tolerations and scheduling gates of every pod
  template, and the cluster's own `upgradeStrategy` left out, and stores the hash and the number of
  worker groups on the RayCluster it builds.
- Equal hash → nothing: the RayCluster is not touched, so a change of only those left-out fields is
  never applied (by design for min/max replicas: kuberay#2331; for tolerations: kuberay#4569).
- Equal once the desired spec is cut to the running cluster's number of worker groups, i.e. the only
  difference is worker groups appended at the end → the RayCluster is updated in place, with the
  whole desired spec (so left-out fields of existing groups are carried along then).
- Anything else → a new RayCluster, all of its pods at once, when the RayService's
  `upgradeStrategy.type` is `NewCluster` (or unset, unless KubeRay runs with
  `ENABLE_ZERO_DOWNTIME=false`); with `None` the change is not applied at all.
"""

from __future__ import annotations

import base64
import copy
import enum
import hashlib
import json
from collections.abc import Mapping
from typing import Any

UPGRADE_NEW_CLUSTER = "NewCluster"


class ClusterChange(enum.Enum):
    NOTHING = "nothing"
    UPDATE_IN_PLACE = "update-in-place"
    NEW_CLUSTER = "new-cluster"


def cluster_spec_hash(cluster_config: Mapping[str, Any]) -> str:
    """KubeRay's `GenerateHashWithoutReplicasAndWorkersToDelete` of a `rayClusterConfig` (SHA-1,
    base32hex, over JSON; keys sorted here, where Go follows struct order: only equality matters)."""
    spec = _compact(_without_muted(cluster_config))
    serial = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return base64.b32hexencode(hashlib.sha1(serial.encode(), usedforsecurity=False).digest()).decode()


def decide_cluster_change(running: Mapping[str, Any], desired: Mapping[str, Any]) -> ClusterChange:
    """KubeRay's choice for a RayService whose RayCluster was built from `running` when its
    `rayClusterConfig` becomes `desired` (whether a new cluster is then built: `applies_new_cluster`)."""
    if cluster_spec_hash(running) == cluster_spec_hash(desired):
        return ClusterChange.NOTHING
    running_groups = len(running.get("workerGroupSpecs") or [])
    desired_groups = list(desired.get("workerGroupSpecs") or [])
    if len(desired_groups) >= running_groups:
        cut = {**desired, "workerGroupSpecs": desired_groups[:running_groups]}
        if cluster_spec_hash(running) == cluster_spec_hash(cut):
            return ClusterChange.UPDATE_IN_PLACE
    return ClusterChange.NEW_CLUSTER


def applies_new_cluster(upgrade_strategy: Mapping[str, Any] | None, *, zero_downtime_env: bool = True) -> bool:
    """KubeRay's `isZeroDowntimeUpgradeEnabled`: `spec.upgradeStrategy.type` wins; unset, KubeRay's
    own `ENABLE_ZERO_DOWNTIME` setting decides (true unless set to false). v1.6+ also accepts
    `NewClusterWithIncrementalUpgrade` behind a feature gate, which this project does not use."""
    kind = (upgrade_strategy or {}).get("type")
    if kind is not None:
        return bool(kind == UPGRADE_NEW_CLUSTER)
    return zero_downtime_env


def ignored_changes(running: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    """Fields that differ while the hash is equal, so KubeRay leaves the running cluster as it is
    (e.g. a new `maxReplicas` or new tolerations of an existing group). `replicas` and
    `workersToDelete` are not among them: Ray's autoscaler owns those."""
    if decide_cluster_change(running, desired) is not ClusterChange.NOTHING:
        return []
    ignored: list[str] = []
    if running.get("suspend") != desired.get("suspend"):
        ignored.append("suspend")
    head_paths = ("template.spec.tolerations", "template.spec.schedulingGates")
    for path in head_paths:
        if _get(running.get("headGroupSpec"), path) != _get(desired.get("headGroupSpec"), path):
            ignored.append(f"headGroupSpec.{path}")
    worker_paths = ("minReplicas", "maxReplicas", *head_paths)
    for index, (old, new) in enumerate(
        zip(running.get("workerGroupSpecs") or [], desired.get("workerGroupSpecs") or [], strict=True)
    ):
        ignored += [f"workerGroupSpecs[{index}].{p}" for p in worker_paths if _get(old, p) != _get(new, p)]
    return ignored


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(part)
    return obj


def _compact(value: Any) -> Any:
    """Empty and null fields left out, as Go's `omitempty` serializes the typed spec."""
    if isinstance(value, Mapping):
        items = ((k, _compact(v)) for k, v in value.items())
        return {k: v for k, v in items if v is not None and v not in ({}, [])}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def _without_muted(cluster_config: Mapping[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(dict(cluster_config))
    spec.pop("suspend", None)  # rayClusterSpecForHashing
    spec.pop("upgradeStrategy", None)
    head_pod = ((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec")
    if isinstance(head_pod, dict):
        head_pod.pop("tolerations", None)
        head_pod.pop("schedulingGates", None)
    for group in spec.get("workerGroupSpecs") or []:
        for key in ("replicas", "minReplicas", "maxReplicas"):
            group.pop(key, None)
        scale = group.get("scaleStrategy")
        if isinstance(scale, dict):
            scale.pop("workersToDelete", None)
        pod = (group.get("template") or {}).get("spec")
        if isinstance(pod, dict):
            pod.pop("tolerations", None)
            pod.pop("schedulingGates", None)
    return spec
