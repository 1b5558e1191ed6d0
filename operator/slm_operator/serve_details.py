"""What Ray Serve itself says about each revision: its application's state, running engine replicas
and the autoscaler's target, from Serve's REST API (`GET /api/serve/applications/` on the Ray
dashboard, the same endpoint KubeRay polls). Parsing is pure; `fetch_serve_details` is the one call.

KubeRay's RayService status names each application's state but no replica counts, so the operator
reads them here; `slm serve` reads the same document from its local Ray.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from slm_operator.http_clients import async_client
from slm_operator.rollout.start_failure import StartFailure, parse_start_failure
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


async def fetch_serve_details(
    dashboard_url: str, *, timeout_s: float, token: str | None = None
) -> dict[str, Any] | httpx.HTTPError:
    """Serve's `ServeInstanceDetails` from the Ray dashboard at `dashboard_url` within `timeout_s` in
    total; a failure is returned (the caller then forgets the counts it had) rather than raised.
    `token`: for a Ray cluster with token authentication (`RAY_AUTH_MODE=token`)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        async with async_client(timeout=timeout_s) as client, asyncio.timeout(timeout_s):
            response = await client.get(dashboard_url.rstrip("/") + SERVE_APPLICATIONS_PATH, headers=headers)
            response.raise_for_status()
            details = response.json()
    except TimeoutError:
        return httpx.TimeoutException(f"no answer from {dashboard_url} within {timeout_s:g} s")
    except httpx.HTTPError as error:
        return error
    except ValueError as error:
        return httpx.DecodingError(f"not JSON from {dashboard_url}: {error}")
    if not isinstance(details, dict):
        return httpx.DecodingError(f"unexpected answer from {dashboard_url}")
    return details


def read_start_failures(details: Mapping[str, Any], revisions: list[str]) -> dict[str, StartFailure]:
    """Revisions whose replicas fail to start, from Serve's `ServeInstanceDetails`."""
    apps = details.get("applications") or {}
    failures = {}
    for revision in revisions:
        app = apps.get(revision_app_name(revision)) or {}
        messages = {n: str(d.get("message") or "") for n, d in (app.get("deployments") or {}).items()}
        failure = parse_start_failure(str(app.get("status", "")), messages)
        if failure is not None:
            failures[revision] = failure
    return failures
