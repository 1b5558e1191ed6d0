"""The router's pure decisions: weighted pick, pins, request parsing, error bodies."""

from __future__ import annotations

import json

import pytest

from slm_serving.config import RevisionRoute, RouterUserConfig
from slm_serving.routing import (
    ENDPOINTS,
    NO_REVISION,
    ForwardRequest,
    RequestError,
    build_health_body,
    build_models_body,
    build_route_table,
    internal_error,
    parse_request,
    request_id_of,
    sse_error_event,
    stream_idle,
    unknown_revision,
)


def _table(**weights: int) -> RouterUserConfig:
    return RouterUserConfig(
        served_model_name="m",
        routes=tuple(RevisionRoute(revision=r, app_name=f"rev-{r}", weight=w) for r, w in weights.items()),
    )


@pytest.mark.parametrize(
    ("weights", "draws", "expected"),
    [
        ({"a": 80, "b": 20}, [0.0, 0.5, 0.7999, 0.8, 0.9999], ["a", "a", "a", "b", "b"]),
        ({"a": 0, "b": 100}, [0.0, 0.5, 0.9999], ["b", "b", "b"]),
        ({"a": 1, "b": 1, "c": 2}, [0.0, 0.25, 0.5, 0.99], ["a", "b", "c", "c"]),
    ],
)
def test_pick_follows_cumulative_weights(weights: dict[str, int], draws: list[float], expected: list[str]) -> None:
    table = build_route_table(_table(**weights))
    picked = [table.pick(d) for d in draws]
    assert [p.revision if p else None for p in picked] == expected


def test_pick_without_weight_is_none_but_pins_still_resolve() -> None:
    table = build_route_table(_table(a=0, b=0))
    assert table.pick(0.3) is None
    pinned = table.pinned("b")
    assert pinned is not None
    assert pinned.app_name == "rev-b"
    assert table.pinned("zzz") is None


def test_empty_table_picks_nothing() -> None:
    assert build_route_table(RouterUserConfig(served_model_name="m", routes=())).pick(0.1) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"model": "tiny", "prompt": "x"}', ForwardRequest(model="tiny", stream=False)),
        (b'{"model": "ad1", "prompt": "x", "stream": true}', ForwardRequest(model="ad1", stream=True)),
        (b'{"prompt": "x", "stream": "yes"}', ForwardRequest(model=None, stream=False)),
    ],
)
def test_parse_accepts(body: bytes, expected: ForwardRequest) -> None:
    assert parse_request(body, frozenset({"tiny", "ad1"})) == expected


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (b"{not json", 400, "invalid_json", None),
        (b"\xff\xfe", 400, "invalid_json", None),
        (b"[1, 2]", 400, "invalid_json", None),
        (b'{"model": 3}', 400, "invalid_type", "model"),
        (b'{"model": "other"}', 404, "model_not_found", "model"),
    ],
)
def test_parse_rejects(body: bytes, status: int, code: str, param: str | None) -> None:
    error = parse_request(body, frozenset({"tiny"}))
    assert isinstance(error, RequestError)
    assert (error.status, error.code, error.param) == (status, code, param)


@pytest.mark.parametrize("error", [NO_REVISION, unknown_revision("r1"), RequestError(400, "m", "t", "p", "c")])
def test_error_body_has_openai_shape(error: RequestError) -> None:
    body = json.loads(error.body())
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"] == error.message


def test_models_body_lists_base_model_and_adapters() -> None:
    body = json.loads(build_models_body("tiny", ("ad1", "ad2"), created=7))
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["tiny", "ad1", "ad2"]
    assert all(m["created"] == 7 for m in body["data"])


def test_forwarded_paths() -> None:
    assert ENDPOINTS == {"/v1/completions": "completions", "/v1/chat/completions": "chat"}


def test_health_body_names_revisions_only_for_the_operator() -> None:
    table = build_route_table(_table(a=90, b=10))
    assert json.loads(build_health_body(table, {"rev-a": True}, with_revisions=True)) == {
        "status": "ok",
        "ready": True,
        "revisions": {"a": {"weight": 90, "ready": True}, "b": {"weight": 10, "ready": False}},
    }
    assert json.loads(build_health_body(table, {"rev-b": False}, with_revisions=False)) == {
        "status": "ok",
        "ready": False,
    }


@pytest.mark.parametrize(
    ("header", "kept"),
    [("a1b2-c3.d4:e5_f6", True), (None, False), ("", False), ("x" * 129, False), ("two words", False)],
)
def test_request_id_is_serves_if_plain_else_fresh(header: str | None, kept: bool) -> None:
    request_id = request_id_of(header)
    assert (request_id == header) is kept
    assert request_id_of(header) != request_id or kept  # a fresh one each time


def test_internal_error_names_the_request_not_the_cause() -> None:
    body = json.loads(internal_error(503, "rid42").body())["error"]
    assert body["code"] == "internal_error"
    assert "rid42" in body["message"]


def test_sse_error_event_ends_the_stream() -> None:
    event = sse_error_event(stream_idle(2.0))
    first, done = event.split("\n\n")[:2]
    assert json.loads(first.removeprefix("data: "))["error"]["code"] == "stream_idle_timeout"
    assert done == "data: [DONE]"
