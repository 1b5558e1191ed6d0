"""The router's request handling in-process: the private pin, the body cap, the deadlines, error texts.

The real `Router` answers real Starlette requests (an ASGI scope and `receive`, as Serve hands them
over). The one stand-in is `FakeEngine`, the replica's own vLLM engine, which cannot run in a unit test:
it answers like `LLMEngine` (`slm_serving.protocol`) and can be told to stall or fail. Revisions other
than the local one would be reached through Ray Serve handles; those paths are covered by the serving
integration tests (tests/integration/serving/test_security.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from slm_serving.config import PIN_PROOF_HEADER, REVISION_HEADER, RevisionRoute, RouterUserConfig
from slm_serving.pins import derive_pin_token, pin_token_digest
from slm_serving.protocol import Head, Usage
from slm_serving.router import Router

TOKEN = derive_pin_token(b"k" * 32, "ns/name/uid")
BODY = b'{"model": "m", "prompt": "hi"}'
STREAM_BODY = b'{"model": "m", "prompt": "hi", "stream": true}'


class FakeEngine:
    """Stand-in for the replica's vLLM engine (`LLMEngine`): one answer, or a stall/failure on request."""

    revision = "local"

    def __init__(self) -> None:
        self.stall_s = 0.0
        self.status = 200
        self.fail_stream_after: int | None = None
        self.stream_stall_after: int | None = None
        self.cancelled = asyncio.Event()
        self.loras: list[str | None] = []

    def adapter_state(self) -> dict[str, Any]:
        return {"loaded": ["sql@v1"], "errors": {"sql@v2": "bad weights"}}

    async def complete(self, endpoint: str, body: bytes, lora: str | None = None) -> Head:
        self.loras.append(lora)
        try:
            await asyncio.sleep(self.stall_s)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        if self.status >= 500:
            return (self.status, b'{"error": {"message": "CUDA error: secret internal detail"}}', 0, 0)
        return (self.status, b'{"choices": [{"text": "ok"}]}', 3, 1)

    async def stream(
        self, endpoint: str, body: bytes, lora: str | None = None
    ) -> AsyncGenerator[Head | str | Usage, None]:
        self.loras.append(lora)
        yield (200, None, 0, 0)
        try:
            for index in range(3):
                if index == self.fail_stream_after:
                    raise RuntimeError("engine core died: secret internal detail")
                if index == self.stream_stall_after:
                    await asyncio.sleep(3600)
                yield f'data: {{"choices": [{{"text": "t{index}"}}]}}\n\n'
            yield "data: [DONE]\n\n"
            yield (3, 3)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.set()
            raise


def _router(engine: FakeEngine, **options: Any) -> Router:
    routes = options.pop("routes", {"local": 100, "other": 0})
    config = RouterUserConfig.model_validate(
        {
            "served_model_name": "m",
            "routes": [RevisionRoute(revision=r, app_name=f"rev-{r}", weight=w) for r, w in routes.items()],
            "pin_token_sha256": pin_token_digest(TOKEN),
            **options,
        }
    )
    return Router(engine, config)


def _request(
    path: str,
    body: bytes | list[bytes] = BODY,
    headers: dict[str, str] | None = None,
    *,
    method: str = "POST",
    finished: bool = True,
) -> Request:
    """A request as Serve hands it to the replica; `body` as a list arrives in pieces (no length given);
    a client that is not `finished` stops sending after them and stays silent."""
    pieces = body if isinstance(body, list) else [body]
    sent = dict(headers or {})
    if isinstance(body, bytes):
        sent.setdefault("content-length", str(len(body)))
    messages = [{"type": "http.request", "body": p, "more_body": True} for p in pieces]
    messages[-1]["more_body"] = not finished

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in sent.items()],
    }
    return Request(scope, receive)


def _call(router: Router, request: Request) -> Response:
    return asyncio.run(router.handle(request))


async def _read_stream(response: Response) -> str:
    assert isinstance(response, StreamingResponse)
    return "".join(
        [chunk if isinstance(chunk, str) else bytes(chunk).decode() async for chunk in response.body_iterator]
    )


def _error(response: Response) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(bytes(response.body))["error"]
    return error


PROOF = {PIN_PROOF_HEADER: TOKEN}


def test_a_pin_without_proof_is_ignored_and_the_revision_not_named() -> None:
    response = _call(_router(FakeEngine()), _request("/v1/completions", headers={REVISION_HEADER: "other"}))
    assert response.status_code == 200  # served by weight (the local revision), not by the pin
    assert REVISION_HEADER not in response.headers


def test_the_operator_pins_any_live_revision_and_learns_who_served() -> None:
    router = _router(FakeEngine(), routes={"local": 0, "other": 100})
    response = _call(router, _request("/v1/completions", headers={REVISION_HEADER: "local", **PROOF}))
    assert response.status_code == 200
    assert response.headers[REVISION_HEADER] == "local"
    missing = _call(router, _request("/v1/completions", headers={REVISION_HEADER: "ghost", **PROOF}))
    assert (missing.status_code, _error(missing)["code"]) == (404, "revision_not_found")


def test_a_wrong_proof_is_refused() -> None:
    response = _call(
        _router(FakeEngine()), _request("/v1/completions", headers={REVISION_HEADER: "local", PIN_PROOF_HEADER: "x"})
    )
    assert (response.status_code, _error(response)["code"]) == (403, "invalid_pin_token")


def test_no_pin_is_honoured_where_the_router_has_no_digest() -> None:
    engine = FakeEngine()
    config = RouterUserConfig(
        served_model_name="m", routes=(RevisionRoute(revision="local", app_name="rev-local", weight=100),)
    )
    response = _call(Router(engine, config), _request("/v1/completions", headers=PROOF))
    assert response.status_code == 403


def test_revision_named_to_clients_only_where_configured() -> None:
    response = _call(_router(FakeEngine(), expose_revision=True), _request("/v1/completions"))
    assert response.headers[REVISION_HEADER] == "local"


def test_healthz_names_revisions_only_to_the_operator() -> None:
    router = _router(FakeEngine())
    public = json.loads(bytes(_call(router, _request("/healthz", method="GET")).body))
    assert public == {"status": "ok", "ready": True}
    private = json.loads(bytes(_call(router, _request("/healthz", headers=PROOF, method="GET")).body))
    assert set(private["revisions"]) == {"local", "other"}


def test_the_sample_window_is_read_by_the_operator_only_and_holds_user_traffic_only() -> None:
    """`/slm/samples` (what the live gate judges) names revisions: clients get 404; the operator's own
    pinned requests are not in it, so they can neither push a canary into a rollback nor hide one."""
    router = _router(FakeEngine())
    _call(router, _request("/v1/completions", headers={REVISION_HEADER: "local", **PROOF}))  # the operator's
    _call(router, _request("/v1/completions"))  # a user's
    public = _call(router, _request("/slm/samples", method="GET"))
    assert public.status_code == 404 and b"local" not in bytes(public.body)
    window = json.loads(bytes(_call(router, _request("/slm/samples?after=0", headers=PROOF, method="GET")).body))
    assert window["revisions"]["local"]["requests"] == 1


def test_a_body_over_the_cap_is_refused_by_its_declared_length() -> None:
    response = _call(_router(FakeEngine(), max_request_bytes=2048), _request("/v1/completions", b" " * 4096 + BODY))
    assert (response.status_code, _error(response)["code"]) == (413, "request_too_large")


def test_a_body_over_the_cap_is_refused_while_it_arrives() -> None:
    pieces = [b" " * 1024] * 3 + [BODY]  # chunked: no content-length
    response = _call(_router(FakeEngine(), max_request_bytes=2048), _request("/v1/completions", pieces))
    assert (response.status_code, _error(response)["code"]) == (413, "request_too_large")


def test_a_body_under_the_cap_arriving_in_pieces_is_served() -> None:
    response = _call(_router(FakeEngine(), max_request_bytes=2048), _request("/v1/completions", [BODY[:9], BODY[9:]]))
    assert response.status_code == 200


def test_a_client_that_stops_sending_its_body_gets_408() -> None:
    response = _call(
        _router(FakeEngine(), idle_timeout_s=0.05), _request("/v1/completions", [BODY[:5]], finished=False)
    )
    assert (response.status_code, _error(response)["code"]) == (408, "request_timeout")


def test_a_request_past_its_deadline_gets_504_and_the_generation_is_cancelled() -> None:
    engine = FakeEngine()
    engine.stall_s = 3600

    async def scenario() -> Response:
        response = await _router(engine, request_timeout_s=0.1).handle(_request("/v1/completions"))
        await asyncio.wait_for(engine.cancelled.wait(), 5)
        return response

    response = asyncio.run(scenario())
    assert (response.status_code, _error(response)["code"]) == (504, "deadline_exceeded")


def test_a_stalled_stream_ends_with_an_idle_timeout_event() -> None:
    engine = FakeEngine()
    engine.stream_stall_after = 1

    async def scenario() -> str:
        response = await _router(engine, idle_timeout_s=0.1).handle(_request("/v1/completions", STREAM_BODY))
        text = await _read_stream(response)
        await asyncio.wait_for(engine.cancelled.wait(), 5)
        return text

    text = asyncio.run(scenario())
    assert '"t0"' in text
    assert "stream_idle_timeout" in text
    assert text.endswith("data: [DONE]\n\n")


def test_a_stream_is_cut_at_the_request_deadline() -> None:
    engine = FakeEngine()
    engine.stream_stall_after = 1

    async def scenario() -> str:
        router = _router(engine, idle_timeout_s=60, request_timeout_s=0.2)
        return await _read_stream(await router.handle(_request("/v1/completions", STREAM_BODY)))

    assert "deadline_exceeded" in asyncio.run(scenario())


def test_internal_failures_reach_the_log_not_the_client(caplog: pytest.LogCaptureFixture) -> None:
    engine = FakeEngine()
    engine.status = 500
    router = _router(engine)
    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        response = _call(router, _request("/v1/completions", headers={"x-request-id": "req-7"}))
        engine.status = 200
        engine.fail_stream_after = 1
        text = asyncio.run(_stream_text(router, {"x-request-id": "req-8"}))
    assert response.status_code == 500
    assert "secret" not in bytes(response.body).decode() and "req-7" in _error(response)["message"]
    assert "secret" not in text and "req-8" in text and text.endswith("data: [DONE]\n\n")
    logged = caplog.text
    assert "req-7" in logged and "req-8" in logged and "secret internal detail" in logged


async def _stream_text(router: Router, headers: dict[str, str]) -> str:
    return await _read_stream(await router.handle(_request("/v1/completions", STREAM_BODY, headers)))


ADAPTERS = [
    {
        "name": "sql",
        "versions": [
            {"version": "v1", "source": "s3://a/v1", "weight": 100},
            {"version": "v2", "source": "s3://a/v2", "weight": 0},
        ],
    }
]


def test_a_request_naming_an_adapter_gets_its_weighted_version_on_the_adapter_revision() -> None:
    engine = FakeEngine()
    router = _router(engine, routes={"local": 0, "other": 100}, adapters=ADAPTERS, adapter_revision="local")
    for _ in range(20):  # the revision weights would send it to `other`; v2 has weight 0
        response = asyncio.run(router.handle(_request("/v1/completions", b'{"model": "sql", "prompt": "hi"}')))
        assert response.status_code == 200
    assert engine.loras == ["sql@v1"] * 20


def test_only_the_operator_may_name_an_adapter_version() -> None:
    engine = FakeEngine()
    router = _router(engine, adapters=ADAPTERS, adapter_revision="local")
    body = b'{"model": "sql@v2", "prompt": "hi"}'
    user = asyncio.run(router.handle(_request("/v1/completions", body)))
    assert user.status_code == 404 and b"sql@v2" in user.body
    operator = asyncio.run(router.handle(_request("/v1/completions", body, {PIN_PROOF_HEADER: TOKEN})))
    assert operator.status_code == 200
    assert engine.loras == ["sql@v2"]


def test_an_adapter_without_a_serving_version_is_503_and_the_base_model_unaffected() -> None:
    engine = FakeEngine()
    waiting = [{"name": "sql", "versions": [{"version": "v1", "source": "s3://a/v1", "weight": 0}]}]
    router = _router(engine, adapters=waiting, adapter_revision="local")
    refused = asyncio.run(router.handle(_request("/v1/completions", b'{"model": "sql", "prompt": "hi"}')))
    assert refused.status_code == 503 and json.loads(refused.body)["error"]["code"] == "adapter_not_ready"
    assert asyncio.run(router.handle(_request("/v1/completions"))).status_code == 200
    assert engine.loras == [None]


def test_the_operator_reads_the_adapter_state_of_the_adapter_revision() -> None:
    router = _router(FakeEngine(), adapters=ADAPTERS, adapter_revision="local")
    user = asyncio.run(router.handle(_request("/slm/adapters", b"", method="GET")))
    assert user.status_code == 404
    read = asyncio.run(router.handle(_request("/slm/adapters", b"", {PIN_PROOF_HEADER: TOKEN}, method="GET")))
    assert json.loads(read.body) == {"loaded": ["sql@v1"], "errors": {"sql@v2": "bad weights"}, "revision": "local"}
