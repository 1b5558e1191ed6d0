"""Label and annotation keys, in one place."""

from typing import Final

LABEL_PREFIX: Final = "slm.dev"
LABEL_NAME: Final = "slm.dev/name"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "slm-operator"
ANNOTATION_REVISIONS: Final = "slm.dev/revisions"
"""Comma-separated revision hashes the RayService serves, stable first."""
ANNOTATION_STABLE_REVISION: Final = "slm.dev/stable-revision"
ANNOTATION_ROLLOUT_COMMAND: Final = "slm.dev/rollout-command"
"""Manual rollout control on an SLMDeployment: pause, resume, promote or abort."""
ANNOTATION_APPLIED_AT: Final = "slm.dev/serve-config-applied-at"
"""On the RayService: when the operator last wrote it (RFC 3339), to tell when the router has reconfigured."""
ANNOTATION_CLUSTER_UPGRADE: Final = "slm.dev/cluster-upgrade"
"""On the RayService: the id of the cluster upgrade it declares (a change KubeRay applies by building a
new Ray cluster); changes with each declared upgrade."""
ANNOTATION_APPROVE_CLUSTER_UPGRADE: Final = "slm.dev/approve-cluster-upgrade"
"""On an SLMDeployment: approves the pending cluster upgrade whose id it names (spec.clusterUpgrade Manual)."""
PVC_MOUNT_ROOT: Final = "/mnt/models"
"""Where pvc://claim/path sources are mounted in serving pods: /mnt/models/<claim>/<path>."""
SERVE_PORT: Final = 8000
