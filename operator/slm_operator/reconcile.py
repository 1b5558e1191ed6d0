"""Read → decide → apply, for one SLMDeployment. Level-based and idempotent: every handler calls
`Reconciler.reconcile` with the object as it is now, and running it twice writes nothing new.

The RayService is written with GET + create, or GET + PUT carrying the resourceVersion read (KubeRay's
own pattern): a concurrent writer makes the PUT fail with 409, and the loop re-reads and decides again.
Nothing is ever written to the SLMDeployment's spec; its status goes through the status subresource.
"""

from __future__ import annotations

import datetime
import enum
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from slm_operator import constants
from slm_operator.api.crd import build_openapi_schema
from slm_operator.api.models import Phase, SLMDeployment, SLMDeploymentStatus
from slm_operator.api.validation import FieldError, apply_defaults, validate_object
from slm_operator.builder.rayservice import build_rayservice, endpoint_url
from slm_operator.canary_pin import PinKey
from slm_operator.kube import ConflictError, KubeApi, KubeError, NotFoundError
from slm_operator.metrics import OperatorMetrics
from slm_operator.observer import RolloutObserver
from slm_operator.probes import POD_IP_FIELD, expand_metrics_urls
from slm_operator.rollout.actions import Action as RolloutAction
from slm_operator.rollout.actions import ClearCommand, EmitEvent, ObserveMetrics, RecordQuality, RunValidation
from slm_operator.rollout.conditions import format_time, parse_time
from slm_operator.rollout.decide import decide
from slm_operator.rollout.working import Observation, RolloutSettings
from slm_operator.serve_details import RevisionReplicas, fetch_serve_details, read_revisions
from slm_operator.settings import OperatorSettings
from slm_operator.status import (
    ServeObservation,
    build_invalid_status,
    estimate_ready_replicas,
    failure_message,
    observe,
    running_revisions,
    status_document,
)
from slm_serving.config import ROUTER_APP_NAME

log = logging.getLogger(__name__)

SERVE_DETAILS_TIMEOUT_S = 2.0
"""Short: the replica counts are nice to have, and a pass holds the object's lock while it waits."""

EventSink = Callable[[dict[str, Any], str, str, str], None]
"""(SLMDeployment body, type Normal|Warning, reason, message) → posts a Kubernetes Event."""


class Action(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"


class NotOursError(Exception):
    """A RayService of that name exists and slm-operator does not manage it: never taken over."""


def contains(have: Any, want: Any) -> bool:
    """`want` is a part of `have`: the API server may add defaults, never drop what we wrote."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and contains(have[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(have) == len(want) and all(map(contains, have, want))
    return bool(have == want)


def classify(desired: dict[str, Any], existing: dict[str, Any] | None) -> Action:
    if existing is None:
        return Action.CREATE
    labels = existing["metadata"].get("labels") or {}
    if labels.get(constants.LABEL_MANAGED_BY) != constants.MANAGED_BY_VALUE:
        raise NotOursError(f"RayService {existing['metadata']['name']} exists and is not managed by slm-operator")
    meta_want = {k: v for k, v in desired["metadata"].items() if k in ("labels", "annotations", "ownerReferences")}
    if contains(existing.get("spec"), desired["spec"]) and contains(existing["metadata"], meta_want):
        return Action.UNCHANGED
    return Action.UPDATE


def build_update(desired: dict[str, Any], existing: dict[str, Any]) -> dict[str, Any]:
    """The PUT body: our spec, labels, annotations and owner on top of the object as read (its
    resourceVersion makes the write conditional; others' labels and annotations are kept)."""
    meta = dict(existing["metadata"])
    for key in ("labels", "annotations"):
        meta[key] = {**(meta.get(key) or {}), **desired["metadata"].get(key, {})}
    if "ownerReferences" in desired["metadata"]:
        meta["ownerReferences"] = desired["metadata"]["ownerReferences"]
    return {**existing, "metadata": meta, "spec": desired["spec"]}


@dataclass
class Reconciler:
    api: KubeApi
    settings: OperatorSettings
    metrics: OperatorMetrics
    emit: EventSink
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
    observers: dict[tuple[str, str], RolloutObserver] = field(default_factory=dict)
    validated: dict[tuple[str, str], tuple[tuple[str, int], list[FieldError]]] = field(default_factory=dict)
    """Validation errors per object and (uid, generation): the spec cannot change without a new generation."""
    pin_key: PinKey = field(default_factory=PinKey.random)
    """Derives each deployment's canary pin token (`slm_operator.canary_pin`)."""
    _locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)

    def reconcile(self, body: dict[str, Any]) -> Phase:
        """One pass: observe the RayService, let `rollout.decide` choose, apply, write status, act.

        kopf runs watch handlers, timers and the RayService handler concurrently: passes over the same
        SLMDeployment are serialized here, and each reads the object afresh (the body a trigger carries
        may predate the status the previous pass wrote)."""
        meta = body["metadata"]
        with self._lock_for(meta["namespace"], meta["name"]):
            try:
                fresh = self.api.get_deployment(meta["namespace"], meta["name"])
            except NotFoundError:  # deleted meanwhile: nothing to do
                return Phase.PENDING
            return self._reconcile(fresh)

    def _pin_digest(self, meta: Mapping[str, Any]) -> str:
        """What this deployment's router checks the operator's pin token against."""
        return self.pin_key.digest(str(meta["namespace"]), str(meta["name"]), str(meta.get("uid", "")))

    def _lock_for(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def _reconcile(self, body: dict[str, Any]) -> Phase:
        meta = body["metadata"]
        namespace, name, generation = meta["namespace"], meta["name"], int(meta.get("generation") or 1)
        previous = _current_status(body)
        now = self.clock()
        errors = self._spec_errors(body)
        if errors:
            status = build_invalid_status(previous, [str(e) for e in errors], generation, now)
            self._write_status(body, previous, status)
            return status.phase
        deployment = SLMDeployment.model_validate(apply_defaults(_without_status(body), build_openapi_schema()))
        existing = self.api.get_rayservice(namespace, name)
        observer = self.observers.setdefault((namespace, name), RolloutObserver())
        decision = decide(
            deployment.spec,
            previous,
            self._observe(deployment, previous, existing, observer, now),
            generation=generation,
            now=now,
            settings=RolloutSettings(min_step_requests=self.settings.min_step_requests),
        )
        status = self._with_serving_details(decision.status, existing, namespace, name)
        desired = build_rayservice(deployment.model_copy(update={"status": status}), pin_digest=self._pin_digest(meta))
        self._apply(body, desired, now)
        self._write_status(body, previous, status)
        self._carry_out(body, deployment, decision.actions, observer)
        return status.phase

    def _spec_errors(self, body: dict[str, Any]) -> list[FieldError]:
        """Validation of the object as the API server would do it, once per spec generation."""
        meta = body["metadata"]
        version = (str(meta.get("uid", "")), int(meta.get("generation") or 1))
        cached = self.validated.get((meta["namespace"], meta["name"]))
        if cached is not None and cached[0] == version:
            return cached[1]
        errors = validate_object(_without_status(body))
        self.validated[(meta["namespace"], meta["name"])] = (version, errors)
        return errors

    def forget(self, namespace: str, name: str) -> None:
        """The SLMDeployment is gone: drop what was kept in memory for it."""
        self.observers.pop((namespace, name), None)
        self.validated.pop((namespace, name), None)
        with self._locks_guard:
            self._locks.pop((namespace, name), None)

    def _observe(
        self,
        deployment: SLMDeployment,
        previous: SLMDeploymentStatus | None,
        existing: dict[str, Any] | None,
        observer: RolloutObserver,
        now: datetime.datetime,
    ) -> Observation:
        revisions = [r.name for r in previous.revisions] if previous is not None else []
        observed = observe(existing)
        running = running_revisions(observed, revisions)
        meta = deployment.metadata  # Serve is asked only once KubeRay reports it up: then it answers fast
        replicas = self._serve_replicas(str(meta["namespace"]), str(meta["name"]), revisions) if running else None
        validation, live = observer.take()
        annotations = deployment.metadata.get("annotations")
        command = annotations.get(constants.ANNOTATION_ROLLOUT_COMMAND) if isinstance(annotations, dict) else None
        return Observation(
            running=running,
            ready_replicas=(
                replicas.ready if replicas is not None else estimate_ready_replicas(deployment.spec, previous, running)
            ),
            desired_replicas=replicas.desired if replicas is not None else {},
            routes_settled=self._routes_settled(deployment, previous, existing, observed, now),
            validation=validation,
            live=live,
            command=str(command) if command is not None else None,
        )

    def _serve_replicas(self, namespace: str, name: str, revisions: list[str]) -> RevisionReplicas | None:
        """Replica counts from Serve's REST API on the RayService's head; None when it cannot be read
        (not up yet, network policy): the status then estimates them from application states."""
        template = self.settings.dashboard_url_template
        if not template or not revisions:
            return None
        url = template.format(name=name, namespace=namespace)
        try:
            token = self.settings.dashboard_token
            details = fetch_serve_details(
                url, timeout_s=SERVE_DETAILS_TIMEOUT_S, token=token.get_secret_value() if token else None
            )
        except (httpx.HTTPError, ValueError) as error:
            log.info("Serve details of %s unavailable (replicas estimated): %s", url, error)
            return None
        return read_revisions(details, revisions)

    def _routes_settled(
        self,
        deployment: SLMDeployment,
        previous: SLMDeploymentStatus | None,
        existing: dict[str, Any] | None,
        observed: ServeObservation,
        now: datetime.datetime,
    ) -> bool:
        """The router runs the weights of `previous`: KubeRay has its serveConfigV2, the router application
        is RUNNING, and the config has been in place long enough for the router to reconfigure."""
        if existing is None or previous is None or observed.applications.get(ROUTER_APP_NAME) != "RUNNING":
            return False
        digest = self._pin_digest(deployment.metadata)
        wanted = build_rayservice(deployment.model_copy(update={"status": previous}), pin_digest=digest)
        wanted = wanted["spec"]["serveConfigV2"]
        if (existing.get("spec") or {}).get("serveConfigV2") != wanted:
            return False
        applied_at = (existing["metadata"].get("annotations") or {}).get(constants.ANNOTATION_APPLIED_AT)
        if applied_at is None:
            return True
        settled_for = (now - parse_time(str(applied_at))).total_seconds()
        return settled_for >= self.settings.routes_settle_seconds

    def _with_serving_details(
        self, status: SLMDeploymentStatus, existing: dict[str, Any] | None, namespace: str, name: str
    ) -> SLMDeploymentStatus:
        """The endpoint, and what KubeRay says about failed applications (e.g. a model that cannot load)."""
        failure = failure_message(observe(existing), [r.name for r in status.revisions])
        message = f"{status.message}; {failure}" if failure and failure not in status.message else status.message
        endpoint = endpoint_url(name, namespace)
        return status.model_copy(update={"endpoint": endpoint, "message": message})

    def _carry_out(
        self,
        body: dict[str, Any],
        deployment: SLMDeployment,
        actions: tuple[RolloutAction, ...],
        observer: RolloutObserver,
    ) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        for action in actions:
            if isinstance(action, EmitEvent):
                self.emit(body, action.type, action.reason, action.message)
            elif isinstance(action, RunValidation):
                router = self.settings.router_url_template.format(name=name, namespace=namespace)
                token = self.pin_key.token(namespace, name, str(meta.get("uid", "")))
                observer.run_validation(router, deployment.spec, action, pin_token=token)
            elif isinstance(action, ObserveMetrics):
                try:
                    observer.observe_live(self._metrics_urls(namespace, name), action)
                except (httpx.HTTPError, KubeError) as error:  # judged on a later pass (a 403: see the RBAC)
                    log.info("metrics of %s/%s unavailable: %s", namespace, name, error)
            elif isinstance(action, RecordQuality):
                self.metrics.record_quality(namespace, name, action.revision, action.pass_rate)
            elif isinstance(action, ClearCommand):
                self.api.remove_deployment_annotation(namespace, name, constants.ANNOTATION_ROLLOUT_COMMAND)
            # ApplyRevisions: already done, every pass converges the RayService to status.revisions.

    def _metrics_urls(self, namespace: str, name: str) -> list[str]:
        """Where the router's metrics are: the template's URLs, per pod of the RayService for `{pod_ip}`."""
        template = self.settings.metrics_url_template
        pod_ips: list[str] = []
        if POD_IP_FIELD in template:
            selector = f"{constants.LABEL_NAME}={name},{constants.LABEL_MANAGED_BY}={constants.MANAGED_BY_VALUE}"
            pod_ips = self.api.list_running_pod_ips(namespace, selector)
        return expand_metrics_urls(template, name, namespace, pod_ips)

    def _apply(self, owner: dict[str, Any], desired: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
        namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        for _ in range(self.settings.conflict_retries + 1):
            existing = self.api.get_rayservice(namespace, name)
            action = classify(desired, existing)
            stamped = _stamp_applied(desired, now)
            try:
                if action is Action.CREATE:
                    created = self.api.create_rayservice(stamped)
                    self.emit(owner, "Normal", "RayServiceCreated", f"created RayService {name}")
                    return created
                if action is Action.UPDATE:
                    assert existing is not None
                    updated = self.api.replace_rayservice(build_update(stamped, existing))
                    self.emit(owner, "Normal", "RayServiceUpdated", f"updated RayService {name}")
                    return updated
                assert existing is not None
                return existing
            except ConflictError:
                log.info("RayService %s/%s changed while we wrote it; re-reading", namespace, name)
        raise ConflictError(f"RayService {namespace}/{name} kept changing under us", 409)

    def _write_status(
        self, body: dict[str, Any], previous: SLMDeploymentStatus | None, status: SLMDeploymentStatus
    ) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        document = status_document(status)
        self.metrics.set_phase(*key, status.phase)
        self.metrics.set_replicas(*key, status.revisions)
        if previous is not None and status_document(previous) == document:
            return
        self.api.patch_deployment_status(*key, document)
        old_phase = previous.phase if previous is not None else None
        if status.phase != old_phase and status.phase in (Phase.FAILED, Phase.READY):
            kind = "Warning" if status.phase == Phase.FAILED else "Normal"
            reason = next((c.reason for c in status.conditions if c.type == "Ready"), status.phase.value)
            self.emit(body, kind, reason, f"phase {old_phase or '-'} → {status.phase.value}: {status.message}")


def _stamp_applied(desired: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    """`desired` with the time its serveConfigV2 is written (how long the router has had it)."""
    annotations = {**desired["metadata"].get("annotations", {}), constants.ANNOTATION_APPLIED_AT: format_time(now)}
    return {**desired, "metadata": {**desired["metadata"], "annotations": annotations}}


def _without_status(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "status"}


def _current_status(body: dict[str, Any]) -> SLMDeploymentStatus | None:
    """The status as stored, or None when absent or unreadable (e.g. written by an older operator)."""
    raw = body.get("status")
    if not raw:
        return None
    try:
        return SLMDeploymentStatus.model_validate(raw)
    except ValueError:
        log.warning("ignoring unreadable status of %s", body["metadata"].get("name"))
        return None
