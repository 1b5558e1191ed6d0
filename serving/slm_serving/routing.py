"""The router's decisions, pure: which revision serves a request, what the request asks for, and the
OpenAI-shaped error bodies. No Ray, no I/O; `slm_serving.router` carries the decisions out."""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from itertools import accumulate
from typing import Final

from slm_serving.config import RevisionRoute, RouterUserConfig
from slm_serving.protocol import CHAT, COMPLETIONS, Endpoint

ENDPOINTS: Final[dict[str, Endpoint]] = {"/v1/completions": COMPLETIONS, "/v1/chat/completions": CHAT}
"""POST paths the router forwards, and the engine endpoint each maps to."""


@dataclass(frozen=True)
class RouteTable:
    """Live revisions: weighted choice for unpinned requests, lookup by name for pinned ones."""

    routes: tuple[RevisionRoute, ...]
    by_revision: dict[str, RevisionRoute]
    weighted: tuple[RevisionRoute, ...]
    cumulative: tuple[int, ...]

    def pick(self, draw: float) -> RevisionRoute | None:
        """The revision for an unpinned request; `draw` is uniform in [0, 1). None: all weights are 0."""
        if not self.weighted:
            return None
        return self.weighted[bisect.bisect_right(self.cumulative, draw * self.cumulative[-1])]

    def pinned(self, revision: str) -> RevisionRoute | None:
        """A revision asked for by name: served whatever its weight (canary validation runs at 0)."""
        return self.by_revision.get(revision)


def build_route_table(config: RouterUserConfig) -> RouteTable:
    weighted = tuple(r for r in config.routes if r.weight > 0)
    return RouteTable(
        routes=config.routes,
        by_revision={r.revision: r for r in config.routes},
        weighted=weighted,
        cumulative=tuple(accumulate(r.weight for r in weighted)),
    )


@dataclass(frozen=True)
class RequestError:
    status: int
    message: str
    type: str
    param: str | None = None
    code: str | None = None

    def body(self) -> bytes:
        """`{"error": {"message", "type", "param", "code"}}`, OpenAI's error shape."""
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return json.dumps({"error": error}).encode()


@dataclass(frozen=True)
class ForwardRequest:
    model: str | None
    stream: bool


def parse_request(body: bytes, accepted_models: frozenset[str]) -> ForwardRequest | RequestError:
    """What the router needs from a request body: its model (checked) and whether it streams.

    Field-level validation is vLLM's (in the engine); the router only rejects what it must look at.
    """
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return RequestError(
            400, f"request body is not valid JSON: {exc}", "invalid_request_error", None, "invalid_json"
        )
    if not isinstance(data, dict):
        return RequestError(400, "request body must be a JSON object", "invalid_request_error", None, "invalid_json")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        return RequestError(400, "`model` must be a string", "invalid_request_error", "model", "invalid_type")
    if model is not None and model not in accepted_models:
        return RequestError(
            404,
            f"The model `{model}` does not exist. Available: {', '.join(sorted(accepted_models))}",
            "invalid_request_error",
            "model",
            "model_not_found",
        )
    return ForwardRequest(model=model, stream=data.get("stream") is True)


def unknown_revision(revision: str) -> RequestError:
    return RequestError(404, f"revision `{revision}` is not live", "invalid_request_error", None, "revision_not_found")


NO_REVISION = RequestError(503, "no model revision is receiving traffic", "service_unavailable", None, "no_revision")
TOO_MANY_PENDING = RequestError(
    503, "too many requests are waiting for a model replica to start", "service_unavailable", None, "overloaded"
)


def cold_start_timeout(revision: str, timeout_s: float) -> RequestError:
    return RequestError(
        503,
        f"no replica of revision `{revision}` became ready within {timeout_s:g}s",
        "service_unavailable",
        None,
        "cold_start_timeout",
    )


def revision_failed(revision: str, reason: str) -> RequestError:
    return RequestError(
        503, f"revision `{revision}` is unavailable: {reason}", "service_unavailable", None, "revision_unavailable"
    )


def not_found(path: str) -> RequestError:
    return RequestError(404, f"no route for {path}", "invalid_request_error", None, "not_found")


def method_not_allowed(method: str, path: str) -> RequestError:
    return RequestError(405, f"{method} is not allowed on {path}", "invalid_request_error", None, "method_not_allowed")


def build_models_body(served_model_name: str, adapter_names: tuple[str, ...], created: int) -> bytes:
    """`GET /v1/models`: the base model and its adapters (answered by the router, even at zero replicas)."""
    entries = [{"id": served_model_name, "object": "model", "created": created, "owned_by": "slm-operator"}]
    entries += [
        {"id": name, "object": "model", "created": created, "owned_by": "slm-operator", "parent": served_model_name}
        for name in adapter_names
    ]
    return json.dumps({"object": "list", "data": entries}).encode()


def build_health_body(table: RouteTable, ready_apps: dict[str, bool]) -> bytes:
    """`GET /healthz`: the router is up; per live revision, its weight and whether a replica runs."""
    revisions = {r.revision: {"weight": r.weight, "ready": ready_apps.get(r.app_name, False)} for r in table.routes}
    return json.dumps({"status": "ok", "revisions": revisions}).encode()
