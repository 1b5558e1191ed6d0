"""What a client cannot do to the router on real Ray Serve: pin a revision, grow the metrics' label set,
send an unbounded body, hold a request past its deadline, or read internal error text.

Shares the session's Ray Serve stack (conftest); the bad revision is given weight 0, so any answer from
it came through a pin. Everything is real (Serve's proxy, the router application, the tiny vLLM
engines, Ray's metrics agent); only the machine stands in (CPUs instead of GPUs).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from slm_serving.config import PIN_PROOF_HEADER, REVISION_HEADER
from slm_serving.local import LocalServe
from slm_serving.metrics import OTHER_REVISION_TAG

from .conftest import BAD, DEFAULT_WEIGHTS, GOOD, MODEL, build_config, pinned

pytestmark = pytest.mark.serving

BODY = {"model": MODEL, "prompt": "What is the capital of Chile?", "max_tokens": 1, "temperature": 0}
WEIGHTS = {GOOD: 100, BAD: 0}
_SERIES = re.compile(r"^(ray_slm_router_\w+)\{([^}]*)\} (\S+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def only_good(local_serve: LocalServe) -> Iterator[LocalServe]:
    local_serve.apply(build_config(WEIGHTS))
    yield local_serve
    local_serve.apply(build_config(DEFAULT_WEIGHTS))


def _series(local: LocalServe) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(local.metrics_url, timeout=10).text
    return [
        (name, dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value))
        for name, labels, value in _SERIES.findall(text)
    ]


def _total(series: list[tuple[str, dict[str, str], float]], metric: str, **labels: str) -> float:
    return sum(v for n, found, v in series if n == metric and all(found.get(k) == x for k, x in labels.items()))


def _wait_for(check: Callable[[], Any], timeout_s: float = 90.0) -> Any:
    """Until `check` is truthy (Ray's metrics agent exports every second; config changes apply async)."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
    return result


def _post(url: str, headers: dict[str, str], body: dict[str, Any] = BODY) -> httpx.Response:
    return httpx.post(f"{url}/v1/completions", json=body, headers=headers, timeout=60)


def test_a_client_cannot_pin_the_operator_can_and_its_traffic_is_kept_apart(only_good: LocalServe) -> None:
    url = only_good.url
    _wait_for(lambda: _post(url, {}).headers.get(REVISION_HEADER) == GOOD)
    before = _series(only_good)

    ignored = [_post(url, {REVISION_HEADER: BAD}) for _ in range(10)]
    assert {(r.status_code, r.headers.get(REVISION_HEADER)) for r in ignored} == {(200, GOOD)}
    honoured = [_post(url, pinned(BAD)) for _ in range(5)]
    assert {(r.status_code, r.headers[REVISION_HEADER]) for r in honoured} == {(200, BAD)}
    forged = _post(url, {REVISION_HEADER: BAD, PIN_PROOF_HEADER: "0" * 64})
    assert (forged.status_code, forged.json()["error"]["code"]) == (403, "invalid_pin_token")

    public = httpx.get(f"{url}/healthz", timeout=10).json()
    assert set(public) == {"status", "ready"}  # no revision names
    assert set(httpx.get(f"{url}/healthz", headers=pinned(GOOD), timeout=10).json()["revisions"]) == {GOOD, BAD}

    validation = "ray_slm_router_validation_requests_total"
    requests = "ray_slm_router_requests_total"
    after = _wait_for(
        lambda: (
            (s := _series(only_good))
            and _total(s, validation, revision=BAD) >= _total(before, validation, revision=BAD) + 5
            and _total(s, requests, revision=GOOD) >= _total(before, requests, revision=GOOD) + 10
            and s
        )
    )
    # the operator's pinned requests are not user traffic of the bad revision (what the live gate judges)
    assert _total(after, requests, revision=BAD) == _total(before, requests, revision=BAD)


def test_metric_labels_stay_bounded_under_1000_distinct_pins(only_good: LocalServe) -> None:
    before = _series(only_good)
    labels_before = {labels["revision"] for _, labels, _ in before if "revision" in labels}
    sent = [f"rev-{uuid.uuid4().hex[:10]}" for _ in range(1000)]
    with httpx.Client(base_url=only_good.url, timeout=60) as client, ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda pin: client.post("/v1/completions", json=BODY, headers={REVISION_HEADER: pin}).status_code, sent
            )
        )
    assert set(codes) == {200}
    requests = "ray_slm_router_requests_total"
    after = _wait_for(
        lambda: (s := _series(only_good)) and _total(s, requests) >= _total(before, requests) + 1000 and s
    )
    labels_after = {labels["revision"] for _, labels, _ in after if "revision" in labels}
    assert not labels_after & set(sent)
    assert labels_after - labels_before <= {GOOD, BAD, OTHER_REVISION_TAG}


def test_body_cap_deadline_and_generic_errors_on_real_serve(only_good: LocalServe) -> None:
    url = only_good.url
    limited = build_config({**WEIGHTS, "ghost": 0}, max_request_bytes=4096, request_timeout_s=0.05)
    only_good.apply(limited, wait=False)
    too_large = {**BODY, "prompt": "x" * 8192}

    def capped() -> httpx.Response | None:
        response = _post(url, {}, too_large)
        return response if response.status_code == 413 else None

    response = _wait_for(capped, timeout_s=60)
    assert response.json()["error"]["code"] == "request_too_large"

    def pieces() -> Iterator[bytes]:  # chunked: no content-length to refuse it by
        yield b'{"model": "tiny", "prompt": "'
        for _ in range(8):
            yield b"x" * 1024
        yield b'"}'

    chunked = httpx.post(f"{url}/v1/completions", content=pieces(), timeout=60)
    assert (chunked.status_code, chunked.json()["error"]["code"]) == (413, "request_too_large")

    slow = {**BODY, "max_tokens": 200, "ignore_eos": True}
    late = _post(url, {}, slow)
    assert (late.status_code, late.json()["error"]["code"]) == (504, "deadline_exceeded")
    with httpx.stream("POST", f"{url}/v1/completions", json={**slow, "stream": True}, timeout=60) as stream:
        text = stream.read().decode()
    assert stream.status_code == 504 or "deadline_exceeded" in text, (stream.status_code, text[-300:])

    only_good.apply(build_config({**WEIGHTS, "ghost": 0}))  # no deadline: the ghost's failure shows
    failed = _post(url, pinned("ghost"))
    error = failed.json()["error"]
    assert (failed.status_code, error["code"]) == (503, "internal_error")
    assert "ghost" not in error["message"] and "Error" not in error["message"]  # only the request id
    assert re.search(r"request id \S+", error["message"])


def test_a_client_that_stalls_its_body_gets_408_on_real_serve(only_good: LocalServe) -> None:
    """Serve's proxy hands the body to the router piece by piece as it arrives, so the router's idle
    timeout (`idle_timeout_s`) cuts a client that stops sending: no replica held by a slow client."""
    url = only_good.url
    only_good.apply(build_config(WEIGHTS, idle_timeout_s=0.5), wait=False)

    def stalled() -> httpx.Response | None:
        def pieces() -> Iterator[bytes]:  # chunked, silent for 2 s after its first piece
            yield b'{"model": "tiny", "prompt": "'
            time.sleep(2)
            yield b'hi", "max_tokens": 1}'

        response = httpx.post(f"{url}/v1/completions", content=pieces(), timeout=60)
        return response if response.status_code == 408 else None

    response = _wait_for(stalled, timeout_s=60)
    assert response.json()["error"]["code"] == "request_timeout"
    only_good.apply(build_config(WEIGHTS))
