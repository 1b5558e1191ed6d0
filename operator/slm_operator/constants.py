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
PVC_MOUNT_ROOT: Final = "/mnt/models"
"""Where pvc://claim/path sources are mounted in serving pods: /mnt/models/<claim>/<path>."""
SERVE_PORT: Final = 8000
