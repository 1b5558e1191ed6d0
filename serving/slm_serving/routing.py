"""The router's decisions, pure: which revision serves a request, what the request asks for, and the
OpenAI-shaped error bodies. No Ray, no I/O; `slm_serving.router` carries the decisions out."""

from __future__ import annotations

import bisect
import json
import re
import secrets
from dataclasses import dataclass
from itertools import accumulate
from typing import Final

from slm_serving.config import AdapterRoute, RevisionRoute, RouterUserConfig, adapter_engine_name
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
class AdapterTable:
    """LoRA adapters: a weighted choice of version for a request naming an adapter, and the names of
    every loaded version (`name@version`), which only the operator may ask for (validation)."""

    names: tuple[str, ...]
    weighted: dict[str, tuple[tuple[str, ...], tuple[int, ...]]]
    """Adapter name → (engine names of its versions with weight, cumulative weights)."""
    engine_names: frozenset[str]

    def pick(self, name: str, draw: float) -> str | None:
        """The version (engine name) for a request naming adapter `name`; `draw` is uniform in [0, 1).
        None: no version of it has traffic (yet)."""
        versions, cumulative = self.weighted.get(name, ((), ()))
        if not versions:
            return None
        return versions[bisect.bisect_right(cumulative, draw * cumulative[-1])]


def build_adapter_table(adapters: tuple[AdapterRoute, ...]) -> AdapterTable:
    weighted: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {}
    for adapter in adapters:
        live = [v for v in adapter.versions if v.weight > 0]
        weighted[adapter.name] = (
            tuple(adapter_engine_name(adapter.name, v.version) for v in live),
            tuple(accumulate(v.weight for v in live)),
        )
    return AdapterTable(
        names=tuple(a.name for a in adapters),
        weighted=weighted,
        engine_names=frozenset(adapter_engine_name(a.name, v.version) for a in adapters for v in a.versions),
    )


def choose_lora(model: str | None, table: AdapterTable, draw: float) -> str | RequestError | None:
    """The LoRA version a request's (accepted) `model` asks for: None for the base model, the weighted
    choice for an adapter name, the version itself for a `name@version` (the operator's only)."""
    if model is None or model in table.engine_names:
        return model
    if model not in table.weighted:
        return None
    return table.pick(model, draw) or adapter_not_serving(model)


def adapter_not_serving(name: str) -> RequestError:
    return RequestError(
        503, f"adapter `{name}` has no version serving yet", "service_unavailable", "model", "adapter_not_ready"
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
    """A pin (the operator's only: see `slm_serving.pins`) to a revision that is not live."""
    return RequestError(404, f"revision `{revision}` is not live", "invalid_request_error", None, "revision_not_found")


PIN_REJECTED = RequestError(
    403, "the pin token is not valid for this deployment", "permission_error", None, "invalid_pin_token"
)


def request_too_large(limit: int) -> RequestError:
    return RequestError(
        413, f"the request body is larger than {limit} bytes", "invalid_request_error", None, "request_too_large"
    )


BODY_TIMEOUT = RequestError(
    408, "the request body did not arrive in time", "invalid_request_error", None, "request_timeout"
)


def deadline_exceeded(timeout_s: float) -> RequestError:
    return RequestError(
        504,
        f"no complete answer within the request deadline of {timeout_s:g}s",
        "timeout_error",
        None,
        "deadline_exceeded",
    )


def stream_idle(timeout_s: float) -> RequestError:
    return RequestError(504, f"the model sent nothing for {timeout_s:g}s", "timeout_error", None, "stream_idle_timeout")


def internal_error(status: int, request_id: str) -> RequestError:
    """What a client sees of a failure inside the service: no exception text (that goes to the log,
    under the same request id)."""
    kind = "service_unavailable" if status == 503 else "server_error"
    return RequestError(status, f"the model could not answer (request id {request_id})", kind, None, "internal_error")


def sse_error_event(error: RequestError) -> str:
    """An error that ends a stream already under way (its status line is sent): vLLM's shape, an error
    event and then the end marker."""
    return f"data: {error.body().decode()}\n\ndata: [DONE]\n\n"


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(header: str | None) -> str:
    """The request's id: Serve's (`x-request-id`, which Serve also puts on the answer and in its access
    log), or a fresh one where it is missing or not a plain token (it goes into log lines)."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return secrets.token_hex(8)


NO_REVISION = RequestError(503, "no model revision is receiving traffic", "service_unavailable", None, "no_revision")
TOO_MANY_PENDING = RequestError(
    503, "too many requests are waiting for a model replica to start", "service_unavailable", None, "overloaded"
)


def cold_start_timeout(timeout_s: float) -> RequestError:
    return RequestError(
        503, f"no model replica became ready within {timeout_s:g}s", "service_unavailable", None, "cold_start_timeout"
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


def build_health_body(table: RouteTable, ready_apps: dict[str, bool], *, with_revisions: bool) -> bytes:
    """`GET /healthz`: the router is up and whether a revision with traffic has a running replica; per
    live revision its weight and readiness only `with_revisions` (the operator's requests)."""
    ready = any(ready_apps.get(r.app_name, False) for r in table.weighted)
    body: dict[str, object] = {"status": "ok", "ready": ready}
    if with_revisions:
        body["revisions"] = {
            r.revision: {"weight": r.weight, "ready": ready_apps.get(r.app_name, False)} for r in table.routes
        }
    return json.dumps(body).encode()
