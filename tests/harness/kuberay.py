"""A stand-in for KubeRay, for tests only (no cluster, no KubeRay here).

It does for one RayService what KubeRay's RayService controller does with Serve: applies the RayService's
`serveConfigV2` through Serve's declarative REST API (`PUT /api/serve/applications/`, the path KubeRay
uses through the dashboard, which reconfigures weights without restarting replicas) — here to a local
Ray Serve (`LocalServe`) instead of a RayCluster — and writes the applications' statuses into
`status.activeServiceStatus.applicationStatuses` the way KubeRay reports them. It creates no pods and
no cluster: the Ray side runs in-process on this machine.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

import httpx
import kubernetes
import yaml

from slm_serving.config import ServeConfigV2
from slm_serving.local import LocalServe, LocalServeError

RAYS = ("ray.io", "v1", "default", "rayservices")


class KubeRayStandIn:
    def __init__(self, k8s: kubernetes.client.CustomObjectsApi, local: LocalServe, name: str) -> None:
        self.k8s, self.local, self.name = k8s, local, name
        self.applied: str | None = None
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kuberay-stand-in", daemon=True)

    def __enter__(self) -> KubeRayStandIn:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._sync()
            except (kubernetes.client.ApiException, httpx.HTTPError, LocalServeError) as error:
                self.errors.append(f"{type(error).__name__}: {error}")

    def _sync(self) -> None:
        try:
            rayservice = self.k8s.get_namespaced_custom_object(*RAYS, self.name)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return
            raise
        config = rayservice["spec"]["serveConfigV2"]
        if config != self.applied:
            self.local.apply(ServeConfigV2.model_validate(yaml.safe_load(config)), wait=False)
            self.applied = config
        self.k8s.patch_namespaced_custom_object_status(
            *RAYS, self.name, {"status": {"activeServiceStatus": {"applicationStatuses": self._statuses()}}}
        )

    def _statuses(self) -> dict[str, Any]:
        statuses: dict[str, Any] = {}
        for name, app in (self.local.details().get("applications") or {}).items():
            deployments = {
                dep: {"status": str(d.get("status", "")), "message": str(d.get("message") or "")}
                for dep, d in (app.get("deployments") or {}).items()
            }
            statuses[name] = {
                "status": str(app.get("status", "")),
                "message": str(app.get("message") or ""),
                "serveDeploymentStatuses": deployments,
            }
        return statuses
