"""`Router`: the OpenAI-compatible front of an SLMDeployment, in two places.

* **Steady state** (no canary): the stable revision's application has the route `/v1` and each of its
  engine replicas answers HTTP itself through a `Router` that serves its own revision in-process. A
  request costs no hop beyond vLLM's own: HTTP → Serve (proxy, or the replica's own port with
  HAProxy / direct ingress) → `LLMEngine.__call__` → this replica's engine.
* **While a canary is live** no revision has `/v1`, and requests go to the router application
  (`RouterDeployment`, route `/`, no engine), which calls every revision through its handle, so the
  canary and the stable pay the same hop and the rollout gate compares them on equal terms. See
  `slm_operator.builder.serve_config` for why changing routes never drops a request.

Per request: pick a revision (`x-slm-revision` pin, else weighted draw from `RouterUserConfig`); the
local one in-process, any other through its application's handle (`serve.get_app_handle` →
`LLMEngine.complete` / `.stream`). The answer goes back as JSON or SSE, with `x-slm-revision` naming
the revision that served.

Kept cheap per request: the body is forwarded as bytes (vLLM parses it once, in the engine), no
pydantic objects, the `/v1/models` answer is precomputed. Weights change through `reconfigure()`
(a `user_config` change) without restarting the replica.

Retired revisions: a request still waiting for its answer from a revision that a new `user_config`
removes is cancelled there and sent again through the new routes (a pinned one gets 404): a Serve
handle to a deleted application would otherwise hold it forever.

Scale from zero (another revision): a background task polls Serve for which revisions have a running
replica (every second while one has none, every 5 s otherwise). A request to a revision without one
is held (at most `max_pending_requests` of them) until its first answer, for at most
`cold_start_timeout_s`, then answered 503. A stable revision that has `/v1` itself scales from zero
through Serve, which holds HTTP requests until its first replica runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from slm_serving.config import (
    ENGINE_DEPLOYMENT_NAME,
    REVISION_HEADER,
    ROUTER_DEPLOYMENT_NAME,
    RouterUserConfig,
    revision_app_name,
)
from slm_serving.metrics import NO_REVISION_TAG, RouterMetrics
from slm_serving.protocol import Head, Usage
from slm_serving.routing import (
    ENDPOINTS,
    NO_REVISION,
    TOO_MANY_PENDING,
    RequestError,
    build_health_body,
    build_models_body,
    build_route_table,
    cold_start_timeout,
    method_not_allowed,
    not_found,
    parse_request,
    revision_failed,
    unknown_revision,
)
from slm_serving.samples import SAMPLES_PATH, parse_after

logger = logging.getLogger("ray.serve")

_JSON = "application/json"
_NOT_READY_POLL_S = 1.0
_READY_POLL_S = 5.0


class LocalEngine(Protocol):
    """The engine of the replica the router runs in (`LLMEngine`)."""

    revision: str

    async def complete(self, endpoint: str, body: bytes) -> Head: ...

    def stream(self, endpoint: str, body: bytes) -> AsyncGenerator[Head | str | Usage, None]: ...


class _LocalStream:
    """This replica's own stream, with the `cancel()` a Serve response generator has."""

    def __init__(self, chunks: AsyncGenerator[Head | str | Usage, None]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> _LocalStream:
        return self

    async def __anext__(self) -> Head | str | Usage:
        return await self._chunks.__anext__()

    def cancel(self) -> None:
        """Stop the generation (vLLM aborts a request whose generator is closed)."""
        closing = self._chunks.aclose()
        task = asyncio.ensure_future(closing)
        task.add_done_callback(lambda done: done.cancelled() or done.exception())


class Router:
    """Weighted, pinnable OpenAI router: the local engine (if any) in-process, other revisions by handle."""

    def __init__(self, local: LocalEngine | None, config: RouterUserConfig) -> None:
        """`config` until the first `reconfigure` (a replica of an application with no `user_config`
        serves only itself)."""
        self._local = local
        self._local_app = revision_app_name(local.revision) if local is not None else None
        self._handles: dict[str, DeploymentHandle[Any]] = {}
        self._stream_handles: dict[str, DeploymentHandle[Any]] = {}
        self._ready: dict[str, bool] = {}
        self._pending = 0
        self._waiting: dict[str, set[asyncio.Future[Any]]] = {}
        self._metrics = RouterMetrics()
        self._watcher: asyncio.Task[None] | None = None
        self._configure(config)

    async def reconfigure(self, config: RouterUserConfig) -> None:
        """New weights (a `user_config` change): swapped in place, no restart. Async, so it runs on the
        event loop that serves requests and can cancel their waits on retired revisions."""
        self._configure(config)
        live = {r.app_name for r in self._table.routes}
        for stale in set(self._handles) - live:
            del self._handles[stale], self._stream_handles[stale]
        for stale in set(self._waiting) - live:
            for waiting in self._waiting.pop(stale):
                waiting.cancel()
        logger.info("routes: %s", ", ".join(f"{r.revision}={r.weight}" for r in self._table.routes) or "none")

    def _configure(self, config: RouterUserConfig) -> None:
        self._config = config
        self._accepted_models = frozenset((config.served_model_name, *config.adapter_names))
        self._models_body = build_models_body(config.served_model_name, config.adapter_names, int(time.time()))
        self._table = build_route_table(config)
        self._metrics.window.keep(r.revision for r in self._table.routes)
        if self._local_app is not None:
            self._ready[self._local_app] = True

    async def handle(self, request: Request) -> Response:
        started = time.monotonic()
        path = request.url.path
        endpoint = ENDPOINTS.get(path)
        if endpoint is None:
            return self._non_forwarded(request.method, path, request.url.query)
        if request.method != "POST":
            return _error_response(method_not_allowed(request.method, path), None)
        body = await request.body()
        parsed = parse_request(body, self._accepted_models)
        if isinstance(parsed, RequestError):
            self._metrics.observe(NO_REVISION_TAG, endpoint, parsed.status, 0.0)
            return _error_response(parsed, None)
        pin = request.headers.get(REVISION_HEADER)
        forward = self._stream if parsed.stream else self._complete
        while True:  # again only when the chosen revision was retired before it answered
            route = self._table.pinned(pin) if pin else self._table.pick(random.random())
            if route is None:
                error = unknown_revision(pin) if pin else NO_REVISION
                self._metrics.observe(pin or NO_REVISION_TAG, endpoint, error.status, 0.0)
                return _error_response(error, None)
            response = await forward(route.revision, route.app_name, endpoint, body, started)
            if response is not None:
                return response

    async def _complete(self, revision: str, app: str, endpoint: str, body: bytes, started: float) -> Response | None:
        calls: list[Any] = []

        def call() -> Any:
            if self._local is not None and app == self._local_app:
                calls.append(asyncio.ensure_future(self._local.complete(endpoint, body)))
            else:
                calls.append(self._handle(app).complete.remote(endpoint, body))
            return calls[0]

        head = await self._first(revision, app, call)
        if head is None or isinstance(head, RequestError):
            return self._unanswered(head, calls, revision, endpoint, started)
        status, payload, prompt_tokens, completion_tokens = head
        self._metrics.observe(revision, endpoint, status, time.monotonic() - started, prompt_tokens, completion_tokens)
        return Response(payload, status_code=status, media_type=_JSON, headers={REVISION_HEADER: revision})

    async def _stream(self, revision: str, app: str, endpoint: str, body: bytes, started: float) -> Response | None:
        calls: list[Any] = []

        def call() -> Any:
            if self._local is not None and app == self._local_app:
                calls.append(_LocalStream(self._local.stream(endpoint, body)))
            else:
                calls.append(self._handle(app, stream=True).stream.remote(endpoint, body))
            return calls[0].__anext__()

        head = await self._first(revision, app, call)
        if head is None or isinstance(head, RequestError):
            return self._unanswered(head, calls, revision, endpoint, started)
        status, payload = head[0], head[1]
        if payload is not None:  # an error (or a whole answer) instead of a stream
            self._metrics.observe(revision, endpoint, status, time.monotonic() - started)
            return Response(payload, status_code=status, media_type=_JSON, headers={REVISION_HEADER: revision})
        return StreamingResponse(
            self._relay(revision, endpoint, calls[0], started),
            media_type="text/event-stream",
            headers={REVISION_HEADER: revision},
        )

    def _unanswered(
        self, error: RequestError | None, calls: list[Any], revision: str, endpoint: str, started: float
    ) -> Response | None:
        """The revision did not answer: its call is cancelled; then None (retired: route the request
        again) or the error response."""
        if calls:
            calls[0].cancel()
        if error is None:
            return None
        self._metrics.observe(revision, endpoint, error.status, time.monotonic() - started)
        return _error_response(error, revision)

    async def _relay(self, revision: str, endpoint: str, chunks: Any, started: float) -> AsyncIterator[str]:
        first = True
        usage: tuple[int, int] = (0, 0)
        status = 200
        try:
            async for item in chunks:
                if isinstance(item, str):
                    if first:
                        self._metrics.observe_ttft(revision, endpoint, time.monotonic() - started)
                        first = False
                    yield item
                else:
                    usage = item
        except Exception:
            status = 500
            logger.exception("stream from revision %s broke off", revision)
            raise
        finally:
            chunks.cancel()
            self._metrics.observe(revision, endpoint, status, time.monotonic() - started, *usage)

    async def _first(self, revision: str, app: str, call: Callable[[], Awaitable[Any]]) -> Head | RequestError | None:
        """The engine's head (from `call()`); held and time-bounded while the revision has no running
        replica. None: the revision was retired (`reconfigure`) before it answered."""
        cold = not self._ready.get(app, False)
        if cold and self._pending >= self._config.max_pending_requests:
            return TOO_MANY_PENDING
        if cold:
            self._pending += 1
        waiting = self._waiting.setdefault(app, set())
        answer: asyncio.Future[Head] | None = None
        try:
            answer = asyncio.ensure_future(call())
            waiting.add(answer)
            if cold:
                head: Head = await asyncio.wait_for(answer, timeout=self._config.cold_start_timeout_s)
            else:
                head = await answer
            return head
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the client went away: not ours to retry
            logger.info("revision %s was retired before it answered; routing the request again", revision)
            return None
        except TimeoutError:
            return cold_start_timeout(revision, self._config.cold_start_timeout_s)
        except Exception as exc:  # the handle raises Ray/Serve errors of many kinds: all mean "not served"
            logger.warning("revision %s failed a request: %s", revision, exc)
            if app != self._local_app:
                self._ready[app] = False
            return revision_failed(revision, f"{type(exc).__name__}: {exc}"[:500])
        finally:
            if answer is not None:
                waiting.discard(answer)
            if cold:
                self._pending -= 1

    def _handle(self, app: str, *, stream: bool = False) -> DeploymentHandle[Any]:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_readiness())
        handles = self._stream_handles if stream else self._handles
        handle = handles.get(app)
        if handle is None:
            base = serve.get_app_handle(app)
            self._handles[app] = base
            self._stream_handles[app] = base.options(stream=True)
            handle = handles[app]
        return handle

    async def _watch_readiness(self) -> None:
        """Poll Serve for running replicas: often while a revision has none, rarely once all run.

        `serve.status()` costs the router real CPU (it serializes every deployment's config), hence
        the slow steady-state interval; a failed request marks its revision not ready at once.
        """
        while True:
            apps = [r.app_name for r in self._table.routes if r.app_name != self._local_app]
            with contextlib.suppress(Exception):  # a failed poll keeps the last known state
                ready = await asyncio.to_thread(_running_apps, apps)
                self._ready = ready | ({self._local_app: True} if self._local_app is not None else {})
            all_ready = all(self._ready.get(app, False) for app in apps)
            await asyncio.sleep(_READY_POLL_S if all_ready else _NOT_READY_POLL_S)

    def _non_forwarded(self, method: str, path: str, query: str) -> Response:
        if path == SAMPLES_PATH:  # the rollout gate's read of recent requests (numbers only)
            return Response(self._metrics.window.export(parse_after(query)), media_type=_JSON)
        if path == "/v1/models":
            if method != "GET":
                return _error_response(method_not_allowed(method, path), None)
            return Response(self._models_body, media_type=_JSON)
        if path == "/healthz":
            return Response(build_health_body(self._table, self._ready), media_type=_JSON)
        return _error_response(not_found(path), None)


@serve.deployment(name=ROUTER_DEPLOYMENT_NAME, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
class RouterDeployment:
    """The router on its own (no engine), on `/`: every request while a canary is live. Its routes
    arrive as `user_config`, which Serve applies before the first request and then in place."""

    def __init__(self) -> None:
        self._router = Router(None, RouterUserConfig(served_model_name="", routes=()))

    async def __call__(self, request: Request) -> Response:
        return await self._router.handle(request)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        await self._router.reconfigure(RouterUserConfig.model_validate(user_config))


def _running_apps(apps: list[str]) -> dict[str, bool]:
    """Which revision applications have at least one running engine replica (asks the controller)."""
    status = serve.status().applications
    ready = {}
    for app in apps:
        deployment = status[app].deployments.get(ENGINE_DEPLOYMENT_NAME) if app in status else None
        running = deployment.replica_states.items() if deployment else ()
        ready[app] = any(state == "RUNNING" and count > 0 for state, count in running)  # a str enum
    return ready


def _error_response(error: RequestError, revision: str | None) -> Response:
    headers = {REVISION_HEADER: revision} if revision else None
    return Response(error.body(), status_code=error.status, media_type=_JSON, headers=headers)
