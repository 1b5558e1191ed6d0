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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slm_operator import constants
from slm_operator.api.crd import build_openapi_schema
from slm_operator.api.models import Phase, SLMDeployment, SLMDeploymentStatus
from slm_operator.api.validation import apply_defaults, validate_object
from slm_operator.builder.rayservice import build_rayservice, endpoint_url
from slm_operator.kube import ConflictError, KubeApi
from slm_operator.metrics import OperatorMetrics
from slm_operator.settings import OperatorSettings
from slm_operator.status import (
    build_invalid_status,
    build_status,
    observe,
    plan_revisions,
    status_document,
)

log = logging.getLogger(__name__)

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

    def reconcile(self, body: dict[str, Any]) -> Phase:
        meta = body["metadata"]
        namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
        previous = _current_status(body)
        errors = validate_object(_without_status(body))
        if errors:
            status = build_invalid_status(previous, [str(e) for e in errors], generation, self.clock())
            self._write_status(body, previous, status)
            return status.phase
        deployment = SLMDeployment.model_validate(apply_defaults(_without_status(body), build_openapi_schema()))
        revisions = plan_revisions(deployment.spec, previous)
        planned = deployment.model_copy(update={
            "status": (previous or SLMDeploymentStatus()).model_copy(update={"revisions": revisions}),
        })
        desired = build_rayservice(planned)
        rayservice = self._apply(body, desired)
        status = build_status(deployment.spec, previous, revisions, observe(rayservice), generation,
                              endpoint_url(name, namespace), self.clock())
        self._write_status(body, previous, status)
        return status.phase

    def refresh_status(self, namespace: str, name: str, rayservice: dict[str, Any]) -> None:
        """The RayService reported something: recompute the owner's status, write it if it changed."""
        body = self.api.get_deployment(namespace, name)
        previous = _current_status(body)
        if previous is None or not previous.revisions or previous.phase == Phase.FAILED:
            return  # the owner's own reconcile has not planned revisions yet, or its spec is invalid
        deployment = SLMDeployment.model_validate(apply_defaults(_without_status(body), build_openapi_schema()))
        status = build_status(deployment.spec, previous, list(previous.revisions), observe(rayservice),
                              previous.observed_generation, endpoint_url(name, namespace), self.clock())
        self._write_status(body, previous, status)

    def _apply(self, owner: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        for _ in range(self.settings.conflict_retries + 1):
            existing = self.api.get_rayservice(namespace, name)
            action = classify(desired, existing)
            try:
                if action is Action.CREATE:
                    created = self.api.create_rayservice(desired)
                    self.emit(owner, "Normal", "RayServiceCreated", f"created RayService {name}")
                    return created
                if action is Action.UPDATE:
                    assert existing is not None
                    updated = self.api.replace_rayservice(build_update(desired, existing))
                    self.emit(owner, "Normal", "RayServiceUpdated", f"updated RayService {name}")
                    return updated
                assert existing is not None
                return existing
            except ConflictError:
                log.info("RayService %s/%s changed while we wrote it; re-reading", namespace, name)
        raise ConflictError(f"RayService {namespace}/{name} kept changing under us", 409)

    def _write_status(self, body: dict[str, Any], previous: SLMDeploymentStatus | None,
                      status: SLMDeploymentStatus) -> None:
        meta = body["metadata"]
        document = status_document(status)
        self.metrics.set_phase(meta["namespace"], meta["name"], status.phase)
        if previous is not None and status_document(previous) == document:
            return
        self.api.patch_deployment_status(meta["namespace"], meta["name"], document)
        old_phase = previous.phase if previous is not None else None
        if status.phase != old_phase:
            kind = "Warning" if status.phase in (Phase.FAILED, Phase.DEGRADED) else "Normal"
            reason = next((c.reason for c in status.conditions if c.type == "Ready"), status.phase.value)
            self.emit(body, kind, reason, f"phase {old_phase or '-'} → {status.phase.value}: {status.message}")


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
