"""A stand-in for KubeRay, for tests only (no cluster, no KubeRay here).

Two parts:

- `KubeRayRules` is what KubeRay's RayService controller does with each RayService it sees
  (KubeRay v1.5 to v1.7, `rayservice_controller.go`), applied to every write: the object must be
  valid for KubeRay's RayService CRD (`tests/fixtures/kuberay/`, v1.7.0), and each change of
  `rayClusterConfig` gets KubeRay's decision (`slm_operator.builder.cluster_change`, written from the
  same source) against the RayCluster it would be running. A new RayCluster the RayService does not
  declare (`slm.dev/cluster-upgrade` naming a new upgrade), a change KubeRay would silently leave
  unapplied (`upgradeStrategy: None`, or a left-out field such as an existing group's tolerations or
  maxReplicas changed alone), or an invalid object is recorded as a violation; the context managers
  below fail the test on exit when there is any.
- `KubeRayStandIn` also does for one RayService what KubeRay does with Serve: applies its
  `serveConfigV2` through Serve's declarative REST API (`PUT /api/serve/applications/`, the path
  KubeRay uses through the dashboard) to a local Ray Serve (`LocalServe`) instead of a RayCluster, and
  reports the applications the way KubeRay v1.7.0 does (`rayservice_controller.go`,
  `getAndCheckServeStatus` and `calculateStatus`; unchanged since v1.4): from
  `GET /api/serve/applications/`, each application's `status` and `message` and, under
  `serveDeploymentStatuses`, each deployment's `status` and `message` (Serve's text, copied as is:
  where a replica that failed to start says why), fields left out when empty (`omitempty`). The first
  RayCluster is *pending* until every application is RUNNING: until then the statuses are in
  `status.pendingServiceStatus.applicationStatuses` and `activeServiceStatus` has none; then KubeRay
  promotes it (pending → active) and reports in `activeServiceStatus` from then on. KubeRay replaces
  the whole status on each write (`Status().Update`), so applications and messages that are gone
  disappear. It creates no pods and no cluster; a declared new cluster takes over at once.

Every write is seen through a watch from the last resourceVersion, so none is missed (real KubeRay
reconciles the latest state and may skip intermediate ones; checking each write is stricter).
"""

from __future__ import annotations

import copy
import functools
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import kubernetes
import urllib3
import yaml

from slm_operator import constants
from slm_operator.api.validation import SchemaValidator
from slm_operator.builder.cluster_change import (
    ClusterChange,
    applies_new_cluster,
    decide_cluster_change,
    ignored_changes,
)
from slm_serving.config import ServeConfigV2
from slm_serving.local import LocalServe, LocalServeError
from tests.harness.cluster import RAYSERVICE_CRD

RAYS = ("ray.io", "v1", "default", "rayservices")


@functools.cache
def rayservice_validator() -> SchemaValidator:
    """KubeRay's RayService v1 schema (the vendored CRD)."""
    crd = yaml.load(RAYSERVICE_CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return SchemaValidator(v1["schema"]["openAPIV3Schema"])


@dataclass
class KubeRayRules:
    """KubeRay's view of one RayService: the RayCluster it runs, and what each write makes it do."""

    name: str
    running: dict[str, Any] | None = None
    """`rayClusterConfig` of the RayCluster KubeRay runs (as built or last updated in place)."""
    upgrade_id: str | None = None
    """The `slm.dev/cluster-upgrade` the running cluster was built for."""
    clusters_built: int = 0
    decisions: list[ClusterChange] = field(default_factory=list)
    """KubeRay's decision for each write that changed `rayClusterConfig` (creation first)."""
    violations: list[str] = field(default_factory=list)

    def observe(self, rayservice: dict[str, Any]) -> ClusterChange | None:
        """One RayService write, as stored. Returns KubeRay's decision, None when nothing changed."""
        version = rayservice["metadata"].get("resourceVersion", "?")
        where = f"RayService {self.name} (resourceVersion {version})"
        refused = rayservice_validator().errors(rayservice)
        self.violations += [f"{where}: invalid for KubeRay's CRD: {e}" for e in refused]
        spec = rayservice.get("spec") or {}
        desired = spec.get("rayClusterConfig") or {}
        if self.running is None:
            self._build(desired, rayservice)
            self.decisions.append(ClusterChange.NEW_CLUSTER)
            return ClusterChange.NEW_CLUSTER
        change = decide_cluster_change(self.running, desired)
        if change is ClusterChange.NOTHING:
            ignored = ignored_changes(self.running, desired)
            if ignored:
                self.violations.append(f"{where}: KubeRay would not apply {', '.join(ignored)}")
            return None
        self.decisions.append(change)
        if change is ClusterChange.UPDATE_IN_PLACE:
            self.running = copy.deepcopy(desired)
        elif not applies_new_cluster(spec.get("upgradeStrategy")):
            self.violations.append(f"{where}: needs a new cluster, silently not applied (upgradeStrategy None)")
        else:
            declared = (rayservice["metadata"].get("annotations") or {}).get(constants.ANNOTATION_CLUSTER_UPGRADE)
            if declared is None or declared == self.upgrade_id:
                self.violations.append(f"{where}: undeclared new RayCluster (all GPUs twice while both run)")
            self._build(desired, rayservice)
        return change

    def _build(self, desired: dict[str, Any], rayservice: dict[str, Any]) -> None:
        self.running = copy.deepcopy(desired)
        self.upgrade_id = (rayservice["metadata"].get("annotations") or {}).get(constants.ANNOTATION_CLUSTER_UPGRADE)
        self.clusters_built += 1


class KubeRayWatch:
    """`with KubeRayWatch(k8s) as kuberay:` — KubeRay's rules on every write of every RayService in the
    namespace; fails the `with` block on exit when any write broke them."""

    def __init__(self, k8s: kubernetes.client.CustomObjectsApi) -> None:
        self.k8s = k8s
        self.rules: dict[str, KubeRayRules] = {}
        self.errors: list[str] = []
        """API errors met while watching (retried)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kuberay-watch", daemon=True)
        self._lock = threading.Lock()
        self._seen = _Progress()
        self._synced = threading.Event()
        """The first list is done: writes after it reach the watch (KubeRay's WaitForCacheSync)."""

    @property
    def violations(self) -> list[str]:
        with self._lock:
            return [v for rules in self.rules.values() for v in rules.violations]

    def __enter__(self) -> KubeRayWatch:
        self._thread.start()
        if not self._synced.wait(30):
            self._stop.set()
            raise AssertionError(f"the KubeRay watch never listed the RayServices: {self.errors}")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.drain()
        self._stop.set()
        self._thread.join(30)
        if exc_type is None and self.violations:
            raise AssertionError("KubeRay rules broken:\n" + "\n".join(self.violations))

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until the watch has seen the newest RayService write.

        The newest write is the highest resourceVersion among the RayServices, not the list's own
        resourceVersion: that one also counts writes of other kinds (status, Events), which a watch on
        RayServices never sees, so waiting for it would always run into the timeout."""
        items = self.k8s.list_namespaced_custom_object(*RAYS)["items"]
        newest = max((int(item["metadata"]["resourceVersion"]) for item in items), default=0)
        self._seen.wait_for(str(newest), timeout)

    def on_write(self, rayservice: dict[str, Any]) -> None:
        """Hook for subclasses: called after the rules, for every ADDED or MODIFIED RayService."""

    def _run(self) -> None:
        since: str | None = None
        while not self._stop.is_set():
            try:
                listed = self.k8s.list_namespaced_custom_object(*RAYS) if since is None else None
                if listed is not None:
                    for item in listed["items"]:
                        self._observe(item)
                    since = listed["metadata"]["resourceVersion"]
                    self._seen.advance(str(since))
                    self._synced.set()
                stream = kubernetes.watch.Watch().stream(
                    self.k8s.list_namespaced_custom_object, *RAYS, resource_version=since, timeout_seconds=1
                )
                for event in stream:
                    obj = event["object"]
                    if event["type"] == "ERROR":  # 410 Gone: list again
                        since = None
                        break
                    since = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._observe(obj)
                    elif event["type"] == "DELETED":
                        with self._lock:
                            self.rules.pop(obj["metadata"]["name"], None)
                    self._seen.advance(str(since))
                    if self._stop.is_set():
                        break
                self._seen.advance(str(since))
                self._idle()
            except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError, httpx.HTTPError) as error:
                self.errors.append(f"{type(error).__name__}: {error}")
                self._stop.wait(0.5)
            except LocalServeError as error:
                self.errors.append(f"{type(error).__name__}: {error}")

    def _observe(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            rules = self.rules.setdefault(name, KubeRayRules(name))
            rules.observe(obj)
        self.on_write(obj)

    def _idle(self) -> None:
        """Hook for subclasses: called between watch streams (about once a second)."""


class _Progress:
    """The newest resourceVersion the watch has processed (they are integers in the emulator)."""

    def __init__(self) -> None:
        self._version = 0
        self._changed = threading.Condition()

    def advance(self, version: str) -> None:
        with self._changed:
            self._version = max(self._version, int(version))
            self._changed.notify_all()

    def wait_for(self, version: str, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._version >= int(version), timeout)


class KubeRayStandIn(KubeRayWatch):
    """KubeRay's rules (`KubeRayWatch`) plus Serve for the RayService `name`, on a local Ray Serve."""

    def __init__(self, k8s: kubernetes.client.CustomObjectsApi, local: LocalServe, name: str) -> None:
        super().__init__(k8s)
        self.local, self.name = local, name
        self.latest: str | None = None
        self.applied: str | None = None
        self.promoted = False
        """The first RayCluster had every application RUNNING once: KubeRay made it active."""

    def on_write(self, rayservice: dict[str, Any]) -> None:
        if rayservice["metadata"]["name"] == self.name:
            self.latest = rayservice["spec"]["serveConfigV2"]
            self._apply()

    def _apply(self) -> None:
        if self.latest is not None and self.latest != self.applied:
            self.local.apply(ServeConfigV2.model_validate(yaml.safe_load(self.latest)), wait=False)
            self.applied = self.latest

    def _idle(self) -> None:
        self._apply()  # again, if the last attempt failed
        if self.applied is None:
            return
        applications = self._statuses()
        self.promoted = self.promoted or (
            bool(applications) and all(app.get("status") == "RUNNING" for app in applications.values())
        )
        section = "activeServiceStatus" if self.promoted else "pendingServiceStatus"
        status = {section: {"applicationStatuses": applications}} if applications else {}
        try:  # the whole status, as KubeRay's Status().Update writes it (a merge patch would keep stale keys)
            self.k8s.patch_namespaced_custom_object_status(
                *RAYS,
                self.name,
                [{"op": "add", "path": "/status", "value": status}],
                _content_type="application/json-patch+json",  # the client's default is a merge patch
            )
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise

    def _statuses(self) -> dict[str, Any]:
        """`applicationStatuses` from Serve's REST details, field by field as KubeRay copies them."""
        statuses: dict[str, Any] = {}
        for name, app in (self.local.details().get("applications") or {}).items():
            deployments = {
                dep: _without_empty({"status": d.get("status"), "message": d.get("message")})
                for dep, d in (app.get("deployments") or {}).items()
            }
            statuses[name or "default"] = _without_empty(
                {"status": app.get("status"), "message": app.get("message"), "serveDeploymentStatuses": deployments}
            )
        return statuses


def _without_empty(fields: dict[str, Any]) -> dict[str, Any]:
    """Go's `omitempty`: empty strings and maps are left out."""
    return {key: value for key, value in fields.items() if value not in (None, "", {})}
