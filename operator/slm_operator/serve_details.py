"""What Ray Serve itself says about each revision: its application's state, running engine replicas
and the autoscaler's target, from Serve's REST API (`GET /api/serve/applications/` on the Ray
dashboard, the same endpoint KubeRay polls). Parsing is pure; `fetch_serve_details` is the one call.

KubeRay's RayService status names each application's state but no replica counts, so the operator
reads them here; `slm serve` reads the same document from its local Ray.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from slm_serving.config import ENGINE_DEPLOYMENT_NAME, revision_app_name

SERVE_APPLICATIONS_PATH = "/api/serve/applications/"


@dataclass(frozen=True)
class RevisionReplicas:
    running: frozenset[str] = frozenset()
    """Revisions whose application is RUNNING."""
    ready: dict[str, int] = field(default_factory=dict)
    """RUNNING engine replicas per revision."""
    desired: dict[str, int] = field(default_factory=dict)
    """Serve's target replica count per revision (the autoscaler's decision), where Serve has one."""


def read_revisions(details: Mapping[str, Any], revisions: list[str]) -> RevisionReplicas:
    """Each revision's application state and engine replicas, from Serve's `ServeInstanceDetails`."""
    apps = details.get("applications") or {}
    running: set[str] = set()
    ready: dict[str, int] = {}
    desired: dict[str, int] = {}
    for revision in revisions:
        app = apps.get(revision_app_name(revision)) or {}
        engine = (app.get("deployments") or {}).get(ENGINE_DEPLOYMENT_NAME) or {}
        ready[revision] = sum(1 for r in engine.get("replicas") or [] if r.get("state") == "RUNNING")
        if isinstance(engine.get("target_num_replicas"), int):
            desired[revision] = engine["target_num_replicas"]
        if app.get("status") == "RUNNING":
            running.add(revision)
    return RevisionReplicas(running=frozenset(running), ready=ready, desired=desired)


def fetch_serve_details(dashboard_url: str, *, timeout_s: float, token: str | None = None) -> dict[str, Any]:
    """Serve's `ServeInstanceDetails` from the Ray dashboard at `dashboard_url`; raises `httpx.HTTPError`.
    `token`: for a Ray cluster with token authentication (`RAY_AUTH_MODE=token`)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    response = httpx.get(dashboard_url.rstrip("/") + SERVE_APPLICATIONS_PATH, headers=headers, timeout=timeout_s)
    response.raise_for_status()
    details: dict[str, Any] = response.json()
    return details
