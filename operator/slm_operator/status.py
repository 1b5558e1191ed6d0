"""Pure: the observed RayService (and the revisions being served) → SLMDeployment status.

KubeRay reports, per Serve application, `status.activeServiceStatus.applicationStatuses[app].status`
(RUNNING, DEPLOYING, DEPLOY_FAILED, UNHEALTHY, …) and each deployment's status (HEALTHY, UPDATING,
UNHEALTHY). It reports no replica counts per deployment; Serve marks a deployment HEALTHY only when
its target replicas run, so a revision whose application is RUNNING is counted at its minimum replica
bound (the autoscaler's current target is not visible in the RayService).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from slm_operator.api.models import (
    Condition,
    ConditionType,
    Phase,
    RevisionStatus,
    SLMDeploymentSpec,
    SLMDeploymentStatus,
)
from slm_operator.api.revision import revision_template, template_revision
from slm_operator.builder.revisions import revision_bounds
from slm_serving.config import ROUTER_APP_NAME, revision_app_name

RUNNING = "RUNNING"
FAILED_APP_STATES = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})


class Reason(StrEnum):
    INVALID_SPEC = "InvalidSpec"
    RAYSERVICE_PENDING = "RayServicePending"
    DEPLOYING = "ApplicationsDeploying"
    SERVING = "Serving"
    UNHEALTHY = "ApplicationUnhealthy"
    HEALTHY = "Healthy"
    STABLE = "Stable"


@dataclass(frozen=True)
class ServeObservation:
    """What the RayService says about each Serve application: {app name: status}."""

    exists: bool
    applications: dict[str, str]
    messages: dict[str, str]

    @property
    def failed(self) -> dict[str, str]:
        return {app: s for app, s in self.applications.items() if s in FAILED_APP_STATES}


def observe(rayservice: dict[str, Any] | None) -> ServeObservation:
    if rayservice is None:
        return ServeObservation(False, {}, {})
    apps = ((rayservice.get("status") or {}).get("activeServiceStatus") or {}).get("applicationStatuses") or {}
    return ServeObservation(
        True,
        {name: str(app.get("status", "")) for name, app in apps.items()},
        {name: str(app.get("message", "")) for name, app in apps.items() if app.get("message")},
    )


def plan_revisions(spec: SLMDeploymentSpec, status: SLMDeploymentStatus | None) -> list[RevisionStatus]:
    """The revisions to serve: the recorded ones while the spec's revision is among them, else the
    spec's revision alone at 100 % (replacing the stable one). The canary state machine
    (`slm_operator.rollout`) refines this into validated, weighted steps."""
    template = revision_template(spec)
    name = template_revision(template)
    if status is not None and any(r.name == name for r in status.revisions):
        return list(status.revisions)
    return [RevisionStatus(name=name, role="stable", weight=100, template=template)]


def set_condition(conditions: list[Condition], type_: ConditionType, status: bool, reason: str,
                  message: str, now: str, generation: int | None) -> list[Condition]:
    """Replace one condition; lastTransitionTime moves only when its status changes."""
    value = "True" if status else "False"
    old = next((c for c in conditions if c.type == type_.value), None)
    since = old.last_transition_time if old is not None and old.status == value else now
    new = Condition(type=type_.value, status=value, reason=reason, message=message,
                    last_transition_time=since, observed_generation=generation)
    return [c for c in conditions if c.type != type_.value] + [new]


def build_status(
    spec: SLMDeploymentSpec,
    previous: SLMDeploymentStatus | None,
    revisions: list[RevisionStatus],
    observed: ServeObservation,
    generation: int | None,
    endpoint: str,
    now: datetime,
) -> SLMDeploymentStatus:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    bounds = revision_bounds(spec, revisions)
    counted = []
    for revision in revisions:
        running = observed.applications.get(revision_app_name(revision.name)) == RUNNING
        desired = bounds[revision.name].min_replicas
        counted.append(revision.model_copy(update={
            "ready_replicas": desired if running else 0, "desired_replicas": desired,
        }))
    wanted_apps = [ROUTER_APP_NAME, *(revision_app_name(r.name) for r in revisions)]
    ready = observed.exists and all(observed.applications.get(app) == RUNNING for app in wanted_apps)
    failed = {app: s for app, s in observed.failed.items() if app in wanted_apps}
    if failed:
        phase, reason = Phase.DEGRADED, Reason.UNHEALTHY
        message = "; ".join(f"{app}: {s} {observed.messages.get(app, '')}".strip() for app, s in sorted(failed.items()))
    elif ready:
        phase, reason, message = Phase.READY, Reason.SERVING, "every revision is serving"
    elif observed.applications:
        phase, reason = Phase.DEPLOYING, Reason.DEPLOYING
        waiting = [app for app in wanted_apps if observed.applications.get(app) != RUNNING]
        message = "waiting for " + ", ".join(waiting)
    else:
        phase, reason, message = Phase.DEPLOYING, Reason.RAYSERVICE_PENDING, "RayService not reported by KubeRay yet"
    conditions = list(previous.conditions) if previous is not None else []
    conditions = set_condition(conditions, ConditionType.READY, ready and not failed, reason, message, stamp,
                               generation)
    conditions = set_condition(conditions, ConditionType.PROGRESSING, not ready and not failed,
                               Reason.STABLE if ready else reason, message, stamp, generation)
    conditions = set_condition(conditions, ConditionType.DEGRADED, bool(failed),
                               Reason.UNHEALTHY if failed else Reason.HEALTHY, message if failed else "", stamp,
                               generation)
    stable = next((r.name for r in counted if r.role == "stable"), None)
    canary = next((r for r in counted if r.role == "canary"), None)
    base = previous or SLMDeploymentStatus()
    return base.model_copy(update={
        "phase": phase,
        "observed_generation": generation,
        "conditions": conditions,
        "revisions": counted,
        "stable_revision": stable,
        "canary_revision": canary.name if canary else None,
        "canary_weight": canary.weight if canary else 0,
        "ready_replicas": sum(r.ready_replicas for r in counted),
        "endpoint": endpoint,
        "message": message,
    })


def build_invalid_status(previous: SLMDeploymentStatus | None, errors: list[str], generation: int | None,
                         now: datetime) -> SLMDeploymentStatus:
    """The spec fails validation: say which fields, keep serving whatever was served before."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    message = "invalid spec: " + "; ".join(errors)
    base = previous or SLMDeploymentStatus()
    conditions = set_condition(list(base.conditions), ConditionType.READY, False, Reason.INVALID_SPEC, message,
                               stamp, generation)
    conditions = set_condition(conditions, ConditionType.DEGRADED, True, Reason.INVALID_SPEC, message, stamp,
                               generation)
    return base.model_copy(update={
        "phase": Phase.FAILED, "observed_generation": generation, "conditions": conditions, "message": message,
    })


def status_document(status: SLMDeploymentStatus) -> dict[str, Any]:
    """The status as it goes on the wire (camelCase, JSON types)."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)
