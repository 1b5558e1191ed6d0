"""Background probes: a pass starts them and returns at once; results come on a later pass; asking
again while one runs starts nothing; a new generation or a delete cancels them. The router is an
`httpx.MockTransport` (the HTTP boundary) whose answers the test releases."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from slm_operator.api.models import SLMDeploymentSpec
from slm_operator.observer import ProbeLoop, RolloutObserver
from slm_operator.rollout.actions import ObserveShadow, RunValidation
from slm_serving.config import PIN_PROOF_HEADER, REVISION_HEADER
from tests.harness.cluster import tiny

SSE = {"content-type": "text/event-stream"}


class GatedRouter:
    """Answers every golden prompt once `release` is set; counts the requests it got."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.requests = 0
        self.cancelled = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        chunk = json.dumps({"choices": [{"text": "ok"}]})
        headers = {**SSE, REVISION_HEADER: request.headers[REVISION_HEADER]}  # the pin honoured
        return httpx.Response(200, text=f"data: {chunk}\n\ndata: [DONE]\n\n", headers=headers)


@pytest.fixture
def loop() -> Iterator[ProbeLoop]:
    probes = ProbeLoop()
    yield probes
    probes.close()


def _spec() -> SLMDeploymentSpec:
    return SLMDeploymentSpec.model_validate(tiny()["spec"])


def _wait(check: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_validation_runs_in_the_background_and_is_handed_over_once(loop: ProbeLoop) -> None:
    router = GatedRouter()
    woken = threading.Event()
    observer = RolloutObserver(loop, on_result=woken.set, transport=httpx.MockTransport(router))
    action = RunValidation("canary", "stable")

    started = time.monotonic()
    observer.run_validation("http://router", _spec(), action, pin_token="t")
    assert time.monotonic() - started < 0.5  # the pass does not wait
    _wait(lambda: router.requests == 1)
    observer.run_validation("http://router", _spec(), action, pin_token="t")  # a later pass asks again: nothing new
    assert observer.take() == (None, None)

    loop.submit(_set(router.release))
    assert woken.wait(10)
    validation, _ = observer.take()
    assert validation is not None and validation.revision == "canary"
    assert all(o.answer == "ok" for o in validation.outcomes)
    assert observer.take() == (None, None)


def test_a_new_generation_cancels_the_running_validation(loop: ProbeLoop) -> None:
    router = GatedRouter()
    woken = threading.Event()
    observer = RolloutObserver(loop, on_result=woken.set, transport=httpx.MockTransport(router))
    observer.sync(1)
    observer.run_validation("http://router", _spec(), RunValidation("canary", "stable"), pin_token="t")
    _wait(lambda: router.requests == 1)

    observer.sync(2)

    _wait(lambda: router.cancelled == 1)
    assert not observer.is_running("validation")
    assert not woken.is_set() and observer.take() == (None, None)


def test_cancel_stops_everything(loop: ProbeLoop) -> None:
    router = GatedRouter()
    observer = RolloutObserver(loop, transport=httpx.MockTransport(router))
    observer.run_validation("http://router", _spec(), RunValidation("canary", None), pin_token="t")
    _wait(lambda: router.requests == 1)
    observer.cancel()
    _wait(lambda: router.cancelled == 1)


async def _set(event: asyncio.Event) -> None:
    event.set()


def test_shadow_counts_are_read_in_the_background_and_kept_until_a_new_generation(loop: ProbeLoop) -> None:
    """`GET /slm/shadow` with the pin token; the latest counts stay readable pass after pass (they are
    cumulative for the phase) and go with the generation."""
    body = {
        "instance": "i", "revision": "bbb", "epoch": "2026-11-01T12:00:20Z", "comparison": "exact",
        "copies": 3, "completed": 3, "pairs": 3, "agreed": 2, "canaryErrors": 0, "stableErrors": 0,
        "skipped": 1, "abandoned": 0, "inFlight": 0, "latencyMs": [[10.0, 12.0]] * 3, "worst": [],
    }  # fmt: skip
    seen: list[httpx.Request] = []

    def router(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=body)

    observer = RolloutObserver(loop, transport=httpx.MockTransport(router))
    observer.sync(2)
    observer.observe_shadow("http://router", ObserveShadow("bbb", body["epoch"]), pin_token="t")
    _wait(lambda: observer.latest_shadow() is not None)
    window = observer.latest_shadow()
    assert window is not None and (window.revision, window.pairs, window.agreed, window.skipped) == ("bbb", 3, 2, 1)
    assert seen[0].url.path == "/slm/shadow" and seen[0].headers[PIN_PROOF_HEADER] == "t"
    assert observer.latest_shadow() == window  # not handed over once
    observer.sync(3)
    assert observer.latest_shadow() is None
