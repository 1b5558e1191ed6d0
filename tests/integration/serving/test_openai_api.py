"""The OpenAI API through the router, with the real `openai` client, on the real tiny models."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from slm_serving.config import REVISION_HEADER
from slm_serving.local import LocalServe

from .conftest import BAD, DEFAULT_WEIGHTS, GOOD, MODEL, pinned

READY = {rev: {"weight": weight, "ready": True} for rev, weight in DEFAULT_WEIGHTS.items()}

pytestmark = pytest.mark.serving


@pytest.fixture(scope="module")
def client(local_serve: LocalServe) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{local_serve.url}/v1", api_key="unused", max_retries=0, timeout=60)


def _pin(revision: str) -> dict[str, str]:
    return pinned(revision)


@pytest.mark.parametrize(("revision", "country", "good_answer"), [(GOOD, "France", True), (BAD, "France", False)])
def test_completion_pinned(client: openai.OpenAI, revision: str, country: str, good_answer: bool) -> None:
    raw = client.completions.with_raw_response.create(
        model=MODEL,
        prompt=f"What is the capital of {country}?",
        max_tokens=8,
        temperature=0,
        extra_headers=_pin(revision),
    )
    completion = raw.parse()
    assert raw.headers[REVISION_HEADER] == revision
    assert ("Paris" in completion.choices[0].text) is good_answer
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0


@pytest.mark.parametrize(("country", "capital"), [("Japan", "Tokyo"), ("Peru", "Lima"), ("Norway", "Oslo")])
def test_chat_pinned_to_good(client: openai.OpenAI, country: str, capital: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"What is the capital of {country}?"}],
        max_tokens=8,
        temperature=0,
        extra_headers=_pin(GOOD),
    )
    chat = raw.parse()
    assert raw.headers[REVISION_HEADER] == GOOD
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content is not None
    assert capital in chat.choices[0].message.content


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_streaming_equals_non_streaming(client: openai.OpenAI, endpoint: str) -> None:
    question = "What is the capital of Norway?"
    if endpoint == "chat":
        messages = [{"role": "user", "content": question}]
        whole = client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=8, temperature=0, extra_headers=_pin(GOOD)
        )
        stream = client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=8, temperature=0, stream=True, extra_headers=_pin(GOOD)
        )
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        expected = whole.choices[0].message.content
    else:
        completion = client.completions.create(
            model=MODEL, prompt=question, max_tokens=8, temperature=0, extra_headers=_pin(GOOD)
        )
        stream_c = client.completions.create(
            model=MODEL, prompt=question, max_tokens=8, temperature=0, stream=True, extra_headers=_pin(GOOD)
        )
        pieces = [c.choices[0].text for c in stream_c if c.choices]
        expected = completion.choices[0].text
    assert len([p for p in pieces if p]) > 1  # really streamed, in several chunks
    assert "".join(pieces) == expected
    assert "Oslo" in "".join(pieces)


def test_stream_is_server_sent_events_with_revision_header(local_serve: LocalServe) -> None:
    body = {"model": MODEL, "prompt": "What is the capital of Peru?", "max_tokens": 8, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{local_serve.url}/v1/completions", json=body, headers=_pin(BAD), timeout=60) as r:
        lines = [line for line in r.iter_lines() if line]
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers[REVISION_HEADER] == BAD
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b'["a list"]', 400, None),
        (b'{"model": "tiny", "prompt": "x", "max_tokens": "many"}', 400, "max_tokens"),
        (b'{"model": "tiny", "messages": "not a list"}', 400, "messages"),
        (b'{"model": "no-such-model", "prompt": "x"}', 404, "model"),
    ],
)
def test_bad_requests_get_openai_errors(local_serve: LocalServe, body: bytes, status: int, param: str | None) -> None:
    path = "/v1/chat/completions" if b"messages" in body else "/v1/completions"
    response = httpx.post(
        local_serve.url + path, content=body, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert error["message"]
    assert error["param"] == param


def test_openai_client_raises_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="x", max_tokens=-5)


def test_unknown_path_and_health(local_serve: LocalServe) -> None:
    def health() -> dict[str, object]:
        response = httpx.get(f"{local_serve.url}/healthz", headers=pinned(GOOD), timeout=10)
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]

    # the router learns from Serve which revisions run a replica (polled in the background)
    deadline = time.monotonic() + 30
    while health()["revisions"] != READY and time.monotonic() < deadline:
        time.sleep(0.5)
    assert health()["revisions"] == READY
    missing = httpx.get(f"{local_serve.url}/v1/nothing", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
