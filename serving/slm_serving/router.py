"""`Router`: the OpenAI-compatible front of an SLMDeployment, in two places.

* **Steady state** (no canary): the stable revision's application has the route `/v1` and each of its
  engine replicas answers HTTP itself through a `Router` that serves its own revision in-process. A
  request costs no hop beyond vLLM's own: HTTP → Serve (proxy, or the replica's own port with
  HAProxy / direct ingress) → `LLMEngine.__call__` → this replica's engine.
* **While a canary is live** no revision has `/v1`, and requests go to the router application
  (`RouterDeployment`, route `/`, no engine), which calls every revision through its handle, so the
  canary and the stable pay the same hop and the rollout gate compares them on equal terms. See
  `slm_operator.builder.serve_config` for why changing routes never drops a request.

Per request: pick a revision (the operator's `x-slm-revision` pin, else weighted draw from
`RouterUserConfig`); the local one in-process, any other through its application's handle
(`serve.get_app_handle` → `LLMEngine.complete` / `.stream`). The answer goes back as JSON or SSE,
naming the revision that served (`x-slm-revision`) to the operator, or to all where configured.

Security (docs/security.md, "Router: canary pin, metric labels, limits"): a pin counts only with the
operator's pin token (`slm_serving.pins`); the operator's requests are counted apart from user
traffic; metric tags name live revisions only; the body is capped (`max_request_bytes`, 413), the
request has a deadline (`request_timeout_s`: 408 while the body arrives, 504 after) and a body or a
stream may not stall (`idle_timeout_s`); a failure inside the service reaches the client as a generic
message with the request id, its details go to the log.

Kept cheap per request: the body is forwarded as bytes (vLLM parses it once, in the engine), no
pydantic objects, the `/v1/models` answer is precomputed. Weights change through `reconfigure()`
(a `user_config` change) without restarting the replica.

Shadow traffic (`slm_serving.shadow`): while `RouterUserConfig.shadow` names a revision, a sampled
share of user requests is also copied to it, in a task the answer never waits for; the pairs are
compared there and read by the operator at `GET /slm/shadow`.

LoRA adapters (`RouterUserConfig.adapters`): a request naming an adapter goes to the adapter revision
(the stable one) and is answered with one of the adapter's loaded versions, drawn by the versions'
weights the way revisions are; the operator's validation requests may name one version itself
(`name@version`), which no client can. The engine loads and unloads versions on `reconfigure`
(`slm_serving.adapters`).

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
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from slm_serving.config import (
    ADAPTERS_PATH,
    ENGINE_DEPLOYMENT_NAME,
    PIN_PROOF_HEADER,
    REVISION_HEADER,
    ROUTER_DEPLOYMENT_NAME,
    RouterUserConfig,
    revision_app_name,
)
from slm_serving.metrics import RouterMetrics
from slm_serving.pins import PinProof, check_pin_proof
from slm_serving.protocol import Endpoint, Head, Usage
from slm_serving.routing import (
    BODY_TIMEOUT,
    ENDPOINTS,
    NO_REVISION,
    PIN_REJECTED,
    TOO_MANY_PENDING,
    RequestError,
    build_adapter_table,
    build_health_body,
    build_models_body,
    build_route_table,
    choose_lora,
    cold_start_timeout,
    deadline_exceeded,
    internal_error,
    method_not_allowed,
    not_found,
    parse_request,
    request_id_of,
    request_too_large,
    sse_error_event,
    stream_idle,
    unknown_revision,
)
from slm_serving.samples import SAMPLES_PATH, parse_after
from slm_serving.shadow import SHADOW_PATH, Shadower, ShadowPair

logger = logging.getLogger("ray.serve")

_JSON = "application/json"
REQUEST_ID_HEADER: Final = "x-request-id"
"""Serve's request id (its proxy sets it and names it on the answer); error answers carry it too."""
_ERROR_EVENT: Final = 'data: {"error"'
_NOT_READY_POLL_S = 1.0
_READY_POLL_S = 5.0


class LocalEngine(Protocol):
    """The engine of the replica the router runs in (`LLMEngine`)."""

    revision: str

    async def complete(self, endpoint: str, body: bytes, lora: str | None = None) -> Head: ...

    def stream(
        self, endpoint: str, body: bytes, lora: str | None = None
    ) -> AsyncGenerator[Head | str | Usage, None]: ...

    def adapter_state(self) -> dict[str, Any]: ...


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
        self._shadow = Shadower(self._metrics.observe_shadow)
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

    def pick_adapter(self, name: str, draw: float) -> str | None:
        """The version (`name@version`) the current routes give a request naming adapter `name`."""
        return self._adapters.pick(name, draw)

    def _configure(self, config: RouterUserConfig) -> None:
        self._config = config
        self._adapters = build_adapter_table(config.adapters)
        self._accepted_models = frozenset((config.served_model_name, *self._adapters.names))
        self._operator_models = self._accepted_models | self._adapters.engine_names
        self._models_body = build_models_body(config.served_model_name, self._adapters.names, int(time.time()))
        self._table = build_route_table(config)
        self._metrics.window.keep(r.revision for r in self._table.routes)
        self._metrics.set_live(r.revision for r in self._table.routes)
        self._shadow.configure(config.shadow, time.monotonic())
        if self._local_app is not None:
            self._ready[self._local_app] = True

    async def handle(self, request: Request) -> Response:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        path = request.url.path
        proof = check_pin_proof(request.headers.get(PIN_PROOF_HEADER), self._config.pin_token_sha256)
        if proof is PinProof.INVALID:
            return _error_response(PIN_REJECTED, None)
        operator = proof is PinProof.VALID
        endpoint = ENDPOINTS.get(path)
        if path == ADAPTERS_PATH and operator:
            return await self._adapter_state()
        if endpoint is None:
            return self._non_forwarded(request.method, path, request.url.query, operator=operator)
        if request.method != "POST":
            return _error_response(method_not_allowed(request.method, path), None)
        ex = _Exchange(
            endpoint=endpoint,
            operator=operator,
            request_id=request_id_of(request.headers.get(REQUEST_ID_HEADER)),
            started=started,
            deadline=loop.time() + self._config.request_timeout_s,
        )
        body = await self._read_body(request, ex)
        if isinstance(body, RequestError):
            return self._refused(ex, body)
        parsed = parse_request(body, self._operator_models if operator else self._accepted_models)
        if isinstance(parsed, RequestError):
            return self._refused(ex, parsed)
        lora = choose_lora(parsed.model, self._adapters, random.random())
        if isinstance(lora, RequestError):
            return self._refused(ex, lora)
        ex.lora = lora
        pin = request.headers.get(REVISION_HEADER) if operator else None
        if pin is None and lora is not None:  # adapters are answered by the stable revision's engines
            pin = self._config.adapter_revision
        forward = self._stream if parsed.stream else self._complete
        try:
            async with asyncio.timeout_at(ex.deadline):
                while True:  # again only when the chosen revision was retired before it answered
                    route = self._table.pinned(pin) if pin else self._table.pick(random.random())
                    if route is None:
                        return self._refused(ex, unknown_revision(pin) if pin else NO_REVISION)
                    ex.revision = route.revision
                    if not operator and ex.shadow is None:
                        ex.shadow = self._shadow.start(route.revision, endpoint, body, random.random(), self._send_copy)
                    response = await forward(route.revision, route.app_name, body, ex)
                    if response is not None:
                        return response
        except TimeoutError:
            logger.warning("request %s: no answer from revision %s within its deadline", ex.request_id, ex.revision)
            error = deadline_exceeded(self._config.request_timeout_s)
            self._observe(ex, ex.revision, error.status)
            return _error_response(error, self._revision_header(ex))

    async def _read_body(self, request: Request, ex: _Exchange) -> bytes | RequestError:
        """The body, at most `max_request_bytes` of it, each piece within the idle timeout and all of it
        within the request's deadline."""
        limit = self._config.max_request_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return request_too_large(limit)
        loop = asyncio.get_running_loop()
        pieces: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout_at(min(loop.time() + self._config.idle_timeout_s, ex.deadline)) as window:
                async for piece in request.stream():
                    size += len(piece)
                    if size > limit:
                        return request_too_large(limit)
                    pieces.append(piece)
                    window.reschedule(min(loop.time() + self._config.idle_timeout_s, ex.deadline))
        except TimeoutError:
            return BODY_TIMEOUT
        return b"".join(pieces)

    def _refused(self, ex: _Exchange, error: RequestError) -> Response:
        """A request answered before any revision was chosen."""
        self._observe(ex, None, error.status)
        return _error_response(error, None)

    def _observe(
        self,
        ex: _Exchange,
        revision: str | None,
        status: int,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        answer: bytes | list[str] | None = None,
    ) -> None:
        """A finished request into the metrics: user traffic, or the operator's apart. A copied request
        hands its `answer` (body, or the stream's chunks) to its shadow copy."""
        if ex.operator:
            self._metrics.observe_validation(revision, status)
        else:
            latency = time.monotonic() - ex.started
            self._metrics.observe(revision, ex.endpoint, status, latency, prompt_tokens, completion_tokens)
            if ex.shadow is not None:
                ex.shadow.resolve(status, answer, latency)

    def _send_copy(self, app: str, endpoint: Endpoint, body: bytes) -> Any:
        """A shadow copy, non-streaming: the local engine in-process, any other revision by handle."""
        if self._local is not None and app == self._local_app:
            return asyncio.ensure_future(self._local.complete(endpoint, body))
        return self._handle(app).complete.remote(endpoint, body)

    def _revision_header(self, ex: _Exchange) -> str | None:
        """The revision to name on the answer: to the operator always, to clients where configured."""
        return ex.revision if ex.operator or self._config.expose_revision else None

    def _head_response(self, ex: _Exchange, revision: str, status: int, payload: bytes) -> Response:
        """A whole JSON answer; a failure inside the service (5xx) loses its text to the log."""
        if status >= 500:
            logger.warning("request %s: revision %s answered %d: %s", ex.request_id, revision, status, payload[:2000])
            payload = internal_error(status, ex.request_id).body()
        return Response(payload, status_code=status, media_type=_JSON, headers=_headers(self._revision_header(ex)))

    async def _complete(self, revision: str, app: str, body: bytes, ex: _Exchange) -> Response | None:
        calls: list[Any] = []

        def call() -> Any:
            if self._local is not None and app == self._local_app:
                calls.append(asyncio.ensure_future(self._local.complete(ex.endpoint, body, ex.lora)))
            else:
                calls.append(self._handle(app).complete.remote(ex.endpoint, body, ex.lora))
            return calls[0]

        head = await _cancelling_on_exit(calls, self._first(revision, app, call, ex))
        if head is None or isinstance(head, RequestError):
            return self._unanswered(head, calls, revision, ex)
        status, payload, prompt_tokens, completion_tokens = head
        self._observe(ex, revision, status, prompt_tokens, completion_tokens, payload)
        return self._head_response(ex, revision, status, payload or b"")

    async def _stream(self, revision: str, app: str, body: bytes, ex: _Exchange) -> Response | None:
        calls: list[Any] = []

        def call() -> Any:
            if self._local is not None and app == self._local_app:
                calls.append(_LocalStream(self._local.stream(ex.endpoint, body, ex.lora)))
            else:
                calls.append(self._handle(app, stream=True).stream.remote(ex.endpoint, body, ex.lora))
            return calls[0].__anext__()

        head = await _cancelling_on_exit(calls, self._first(revision, app, call, ex))
        if head is None or isinstance(head, RequestError):
            return self._unanswered(head, calls, revision, ex)
        status, payload = head[0], head[1]
        if payload is not None:  # an error (or a whole answer) instead of a stream
            self._observe(ex, revision, status, answer=payload)
            return self._head_response(ex, revision, status, payload)
        return StreamingResponse(
            self._relay(revision, ex, calls[0]),
            media_type="text/event-stream",
            headers=_headers(self._revision_header(ex)),
        )

    def _unanswered(
        self, error: RequestError | None, calls: list[Any], revision: str, ex: _Exchange
    ) -> Response | None:
        """The revision did not answer: its call is cancelled; then None (retired: route the request
        again) or the error response."""
        if calls:
            calls[0].cancel()
        if error is None:
            return None
        self._observe(ex, revision, error.status)
        return _error_response(error, self._revision_header(ex))

    async def _relay(self, revision: str, ex: _Exchange, chunks: Any) -> AsyncIterator[str]:
        """The stream's chunks, each within the idle timeout and all within the deadline; a stream that
        stalls or fails ends with an error event (its status line is already sent)."""
        loop = asyncio.get_running_loop()
        idle_s = self._config.idle_timeout_s
        first = True
        usage: tuple[int, int] = (0, 0)
        status = 200
        copied: list[str] | None = [] if ex.shadow is not None else None
        try:
            while True:
                idle_bound = loop.time() + idle_s < ex.deadline
                try:
                    async with asyncio.timeout_at(min(loop.time() + idle_s, ex.deadline)):
                        item = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    status = 504
                    timeout = stream_idle(idle_s) if idle_bound else deadline_exceeded(self._config.request_timeout_s)
                    logger.warning("request %s: stream from revision %s: %s", ex.request_id, revision, timeout.code)
                    yield sse_error_event(timeout)
                    break
                if isinstance(item, str):
                    if item.startswith(_ERROR_EVENT):  # vLLM's error inside a stream: its text is internal
                        status = 500
                        logger.warning("request %s: stream from revision %s failed: %s", ex.request_id, revision, item)
                        yield sse_error_event(internal_error(500, ex.request_id))
                        break
                    if first and not ex.operator:
                        self._metrics.observe_ttft(revision, ex.endpoint, time.monotonic() - ex.started)
                    first = False
                    if copied is not None:
                        copied.append(item)
                    yield item
                else:
                    usage = item
        except Exception:
            status = 500
            logger.exception("request %s: stream from revision %s broke off", ex.request_id, revision)
            yield sse_error_event(internal_error(500, ex.request_id))
        finally:
            chunks.cancel()
            self._observe(ex, revision, status, *usage, answer=copied)

    async def _first(
        self, revision: str, app: str, call: Callable[[], Awaitable[Any]], ex: _Exchange
    ) -> Head | RequestError | None:
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
            return cold_start_timeout(self._config.cold_start_timeout_s)
        except Exception as exc:  # the handle raises Ray/Serve errors of many kinds: all mean "not served"
            logger.warning("request %s: revision %s failed: %s: %s", ex.request_id, revision, type(exc).__name__, exc)
            if app != self._local_app:
                self._ready[app] = False
            return internal_error(503, ex.request_id)
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

    async def _adapter_state(self) -> Response:
        """`GET /slm/adapters` (the operator's only): which LoRA versions the adapter revision's engines
        hold and which failed to load, as one of its replicas reports (every replica applies the same
        `user_config` before Serve counts the update done)."""
        revision = self._config.adapter_revision
        route = self._table.pinned(revision) if revision else None
        if route is None:
            return _error_response(NO_REVISION, None)
        try:
            if self._local is not None and route.app_name == self._local_app:
                state = self._local.adapter_state()
            else:
                state = await self._handle(route.app_name).adapter_state.remote()
        except Exception as exc:  # the handle raises Ray/Serve errors of many kinds: all mean "not known"
            logger.warning("adapter state of revision %s unavailable: %s: %s", revision, type(exc).__name__, exc)
            return _error_response(internal_error(503, "adapters"), None)
        return Response(json.dumps(state | {"revision": revision}), media_type=_JSON)

    def _non_forwarded(self, method: str, path: str, query: str, *, operator: bool) -> Response:
        if path == SAMPLES_PATH and operator:  # the rollout gate's read of recent requests (numbers only)
            return Response(self._metrics.window.export(parse_after(query)), media_type=_JSON)
        if path == SHADOW_PATH and operator:  # the shadow phase's pairs (with the worst disagreements' text)
            return Response(self._shadow.export(), media_type=_JSON)
        if path == "/v1/models":
            if method != "GET":
                return _error_response(method_not_allowed(method, path), None)
            return Response(self._models_body, media_type=_JSON)
        if path == "/healthz":
            body = build_health_body(self._table, self._ready, with_revisions=operator)
            return Response(body, media_type=_JSON)
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


def _headers(revision: str | None) -> dict[str, str] | None:
    return {REVISION_HEADER: revision} if revision else None


def _error_response(error: RequestError, revision: str | None) -> Response:
    return Response(error.body(), status_code=error.status, media_type=_JSON, headers=_headers(revision))


async def _cancelling_on_exit(
    calls: list[Any], head: Awaitable[Head | RequestError | None]
) -> Head | RequestError | None:
    """`head`, and if this request is cancelled meanwhile (its deadline, the client gone) the call it
    made is cancelled too: a Serve handle call does not follow the caller's cancellation by itself."""
    try:
        return await head
    except asyncio.CancelledError:
        if calls:
            calls[0].cancel()
        raise


@dataclass
class _Exchange:
    """One forwarded request as the router tracks it."""

    endpoint: Endpoint
    operator: bool
    """Carries the operator's pin proof: its pin is honoured, its traffic kept out of the user metrics."""
    request_id: str
    started: float
    """`time.monotonic()` at arrival (latency metrics)."""
    deadline: float
    """Event-loop time by which the answer must be complete."""
    revision: str | None = None
    """The revision chosen (last chosen, if one was retired meanwhile)."""
    shadow: ShadowPair | None = None
    """The request's shadow copy, if it was copied: waits for the user's answer."""
    lora: str | None = None
    """The LoRA version (`name@version`) the request is answered with; None: the base model."""
