"""What a reconcile pass observes, gathered without waiting on anything but the Kubernetes API:
the RayService as read, and the finished results of background probes (`observer.RolloutObserver`).
Serve's replica counts are requested here and read on a later pass; until then they are estimated."""

from __future__ import annotations

import datetime
from typing import Any

from slm_operator import constants
from slm_operator.api.models import SLMDeployment, SLMDeploymentStatus
from slm_operator.builder.rayservice import build_rayservice
from slm_operator.canary_pin import pin_digest
from slm_operator.observer import RolloutObserver
from slm_operator.rollout.conditions import parse_time
from slm_operator.rollout.working import Observation
from slm_operator.routes import is_routes_settled
from slm_operator.security import dashboard_token
from slm_operator.settings import OperatorSettings
from slm_operator.status import (
    ServeObservation,
    estimate_ready_replicas,
    observe,
    running_revisions,
    start_failures,
)
from slm_serving.config import ROUTER_APP_NAME


def gather_observation(
    deployment: SLMDeployment,
    previous: SLMDeploymentStatus | None,
    existing: dict[str, Any] | None,
    observer: RolloutObserver,
    settings: OperatorSettings,
    now: datetime.datetime,
) -> Observation:
    revisions = [r.name for r in previous.revisions] if previous is not None else []
    observed = observe(existing)
    running = running_revisions(observed, revisions)
    meta = deployment.metadata
    template = settings.dashboard_url_template
    if running and template:  # Serve is asked only once KubeRay reports it up
        url = template.format(name=meta["name"], namespace=meta["namespace"])
        observer.refresh_replicas(url, dashboard_token(settings, deployment), revisions)
    replicas = observer.replicas(revisions) if running and template else None
    validation, live = observer.take()
    annotations = meta.get("annotations")
    command = annotations.get(constants.ANNOTATION_ROLLOUT_COMMAND) if isinstance(annotations, dict) else None
    return Observation(
        running=running,
        ready_replicas=(
            replicas.ready if replicas is not None else estimate_ready_replicas(deployment.spec, previous, running)
        ),
        desired_replicas=replicas.desired if replicas is not None else {},
        routes_settled=routes_settled(deployment, previous, existing, observed, settings, now),
        validation=validation,
        live=live,
        shadow=observer.latest_shadow(),
        command=str(command) if command is not None else None,
        start_failures=start_failures(observed, revisions),
        adapters=observer.take_adapters(),
    )


def routes_settled(
    deployment: SLMDeployment,
    previous: SLMDeploymentStatus | None,
    existing: dict[str, Any] | None,
    observed: ServeObservation,
    settings: OperatorSettings,
    now: datetime.datetime,
) -> bool:
    """The router runs the weights of `previous`: KubeRay has their serveConfigV2 (stamped with when
    it was written), and `routes.is_routes_settled` says the router has had it long enough."""
    if existing is None or previous is None:
        return False
    wanted = build_rayservice(
        deployment.model_copy(update={"status": previous}), pin_digest=pin_digest(settings, deployment)
    )["spec"]["serveConfigV2"]
    applied_at = (existing["metadata"].get("annotations") or {}).get(constants.ANNOTATION_APPLIED_AT)
    return is_routes_settled(
        config_applied=(existing.get("spec") or {}).get("serveConfigV2") == wanted,
        router_running=observed.applications.get(ROUTER_APP_NAME) == "RUNNING",
        seconds_since_applied=None if applied_at is None else (now - parse_time(str(applied_at))).total_seconds(),
        settle_seconds=settings.routes_settle_seconds,
    )
