"""Writing the RayService status KubeRay would write, for operator tests without Ray: every Serve
application of the RayService's serveConfigV2 reported RUNNING (KubeRay v1.7.0
`status.activeServiceStatus.applicationStatuses[app].status`, as in the vendored CRD)."""

from __future__ import annotations

import kubernetes
import yaml

from tests.harness.cluster import RAYS, rays


def report_all_running(k8s: kubernetes.client.CustomObjectsApi, name: str) -> set[str]:
    """Mark every application of `name`'s RayService RUNNING; the application names."""
    config = yaml.safe_load(rays(k8s, name)["spec"]["serveConfigV2"])
    apps = {app["name"] for app in config["applications"]}
    statuses = {app: {"status": "RUNNING"} for app in apps}
    k8s.patch_namespaced_custom_object_status(
        *RAYS, name, {"status": {"activeServiceStatus": {"applicationStatuses": statuses}}}
    )
    return apps
