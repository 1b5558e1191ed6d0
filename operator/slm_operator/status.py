"""Pure: what the RayService says → what `rollout.decide` observes; and the InvalidSpec status.

KubeRay reports, per Serve application, `status.activeServiceStatus.applicationStatuses[app].status`
(RUNNING, DEPLOYING, DEPLOY_FAILED, UNHEALTHY, …) and each deployment's status (HEALTHY, UPDATING,
UNHEALTHY). It reports no replica counts per deployment; Serve marks a deployment HEALTHY only when
its target replicas run, so a revision whose application is RUNNING is counted at its minimum replica
bound (the autoscaler's current target is not visible in the RayService).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from slm_operator.api.models import (
    ConditionType,
    Phase,
    SLMDeploymentSpec,
    SLMDeploymentStatus,
)
from slm_operator.builder.revisions import revision_bounds
from slm_operator.rollout.actions import EmitEvent
from slm_operator.rollout.conditions import find_condition, format_time, set_condition
from slm_operator.rollout.start_failure import StartFailure, parse_start_failure
from slm_serving.config import ROUTER_APP_NAME, revision_app_name

RUNNING = "RUNNING"
FAILED_APP_STATES = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})


INVALID_SPEC = "InvalidSpec"
"""Condition reason when the spec fails the CRD's schema or CEL rules (the fields are named)."""


@dataclass(frozen=True)
class ServeObservation:
    """What the RayService says about each Serve application.

    KubeRay (v1.7.0 `calculateStatus`) reports the cluster that serves in `activeServiceStatus` and
    one that is still starting in `pendingServiceStatus` — the first cluster stays pending until every
    application is RUNNING, so a first deploy whose replicas fail to start is only reported there.
    Only active applications count as running; failures and messages are read from both (pending
    over active: it carries the newer serveConfigV2)."""

    exists: bool
    applications: dict[str, str]
    """{app: status} of the active cluster."""
    messages: dict[str, str]
    """{app: message}, active and pending."""
    deployment_messages: dict[str, dict[str, str]] = field(default_factory=dict)
    """{app: {deployment: message}} (`serveDeploymentStatuses`, where Serve says why replicas fail)."""
    reported: dict[str, str] = field(default_factory=dict)
    """{app: status}, active and pending."""

    @property
    def failed(self) -> dict[str, str]:
        return {app: s for app, s in self.reported.items() if s in FAILED_APP_STATES}


def _application_statuses(rayservice: dict[str, Any], section: str) -> dict[str, Any]:
    statuses = ((rayservice.get("status") or {}).get(section) or {}).get("applicationStatuses") or {}
    return dict(statuses)


def observe(rayservice: dict[str, Any] | None) -> ServeObservation:
    if rayservice is None:
        return ServeObservation(False, {}, {})
    active = _application_statuses(rayservice, "activeServiceStatus")
    both = active | _application_statuses(rayservice, "pendingServiceStatus")
    return ServeObservation(
        True,
        {name: str(app.get("status", "")) for name, app in active.items()},
        {name: str(app.get("message", "")) for name, app in both.items() if app.get("message")},
        {
            name: {d: str(dep.get("message") or "") for d, dep in (app.get("serveDeploymentStatuses") or {}).items()}
            for name, app in both.items()
        },
        {name: str(app.get("status", "")) for name, app in both.items()},
    )


def start_failures(observed: ServeObservation, revisions: list[str]) -> dict[str, StartFailure]:
    """Revisions whose replicas fail to start, as KubeRay relays Serve's deployment messages."""
    failures = {}
    for revision in revisions:
        app = revision_app_name(revision)
        failure = parse_start_failure(observed.reported.get(app, ""), observed.deployment_messages.get(app, {}))
        if failure is not None:
            failures[revision] = failure
    return failures


def running_revisions(observed: ServeObservation, revisions: list[str]) -> frozenset[str]:
    """Revisions whose Serve application KubeRay reports RUNNING."""
    return frozenset(r for r in revisions if observed.applications.get(revision_app_name(r)) == RUNNING)


def estimate_ready_replicas(
    spec: SLMDeploymentSpec, status: SLMDeploymentStatus | None, running: frozenset[str]
) -> dict[str, int]:
    """Ready replicas per revision: KubeRay reports none, so a RUNNING revision counts its minimum
    bound (at least one: Serve marks an application RUNNING only once its replicas are up)."""
    bounds = revision_bounds(spec, status)
    return {name: max(1, b.min_replicas) if name in running else 0 for name, b in bounds.items()}


def failure_message(observed: ServeObservation, revisions: list[str]) -> str:
    """Why wanted applications failed, as KubeRay reports it (e.g. a model that cannot load)."""
    wanted = {ROUTER_APP_NAME, *(revision_app_name(r) for r in revisions)}
    failed = {app: state for app, state in observed.failed.items() if app in wanted}
    return "; ".join(
        f"{app}: {state} {observed.messages.get(app, '')}".strip() for app, state in sorted(failed.items())
    )


def build_invalid_status(
    previous: SLMDeploymentStatus | None, errors: list[str], generation: int | None, now: datetime
) -> SLMDeploymentStatus:
    """The spec fails validation: say which fields, keep serving whatever was served before."""
    stamp = format_time(now)
    message = "invalid spec: " + "; ".join(errors)
    base = previous or SLMDeploymentStatus()
    conditions = set_condition(
        list(base.conditions), ConditionType.READY, "False", INVALID_SPEC, message, now=stamp, generation=generation
    )
    conditions = set_condition(
        conditions, ConditionType.DEGRADED, "True", INVALID_SPEC, message, now=stamp, generation=generation
    )
    return base.model_copy(
        update={
            "phase": Phase.FAILED,
            "observed_generation": generation,
            "conditions": conditions,
            "message": message,
        }
    )


def phase_event(old: Phase | None, status: SLMDeploymentStatus, posted: frozenset[str]) -> EmitEvent | None:
    """The Event for a change of phase to Failed or Ready, with the Ready condition's reason; none
    when the pass already posts an Event of that reason (e.g. `ReplicaStartFailed`)."""
    if status.phase == old or status.phase not in (Phase.FAILED, Phase.READY):
        return None
    ready = find_condition(status.conditions, ConditionType.READY)
    reason = ready.reason if ready is not None else status.phase.value
    if reason in posted:
        return None
    kind: Literal["Normal", "Warning"] = "Warning" if status.phase == Phase.FAILED else "Normal"
    before = old.value if old is not None else "-"
    return EmitEvent(kind, reason, f"phase {before} → {status.phase.value}: {status.message}")


def status_document(status: SLMDeploymentStatus) -> dict[str, Any]:
    """The status as it goes on the wire in a merge patch (camelCase, JSON types): an unset top-level
    field is sent as null, which removes it (a canary that is gone must not linger)."""
    document = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    for name, info in SLMDeploymentStatus.model_fields.items():
        if getattr(status, name) is None:
            document[info.alias or name] = None
    return document
