"""Parsing what the shells observe: the router's sample window and
streamed OpenAI answers; the observer's cursor over that window."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from slm_operator.api.models import GoldenPrompt
from slm_operator.observer import ProbeLoop, RolloutObserver
from slm_operator.probes import (
    StreamError,
    chunk_text,
    parse_adapter_state,
    parse_samples,
    parse_shadow,
    run_validation,
)
from slm_operator.rollout.actions import ObserveMetrics, ValidateAdapter
from slm_operator.rollout.live import LiveSamples, RevisionSamples
from slm_serving.config import ADAPTERS_PATH, PIN_PROOF_HEADER, REVISION_HEADER, ShadowConfig
from slm_serving.samples import SampleWindow, parse_after
from slm_serving.shadow import Answer, ShadowRecorder
from tests.unit.rollout.helpers import spec

SSE = {"content-type": "text/event-stream"}


def test_the_sample_window_round_trips_what_came_after_a_cursor() -> None:
    window = SampleWindow(size=3)
    window.keep(["aaa", "bbb"])
    window.record("aaa", 200, 0.1)
    cursor = parse_samples(json.loads(window.export(None))).last
    window.record("aaa", 200, 0.25)
    window.record("aaa", 503, 0.01)
    window.record_ttft("bbb", 0.05)
    window.record("bbb", 200, 0.3)
    window.record("zzz", 200, 0.3)  # not routed to: not recorded
    window.record_tokens("aaa", 9, 4)
    window.record_tokens("zzz", 9, 4)
    snapshot = parse_samples(json.loads(window.export(cursor)))
    assert snapshot.tokens == {"aaa": (9, 4), "bbb": (0, 0)}
    assert snapshot.last == 5 and set(snapshot.revisions) == {"aaa", "bbb"}
    assert snapshot.revisions["aaa"] == RevisionSamples(requests=2, errors=1, latency_ms=(250.0,))
    assert snapshot.revisions["bbb"] == RevisionSamples(requests=1, errors=0, latency_ms=(300.0,), ttft_ms=(50.0,))


def test_the_window_is_bounded_and_forgets_revisions_no_longer_routed() -> None:
    window = SampleWindow(size=3)
    window.keep(["aaa"])
    for _ in range(10):
        window.record("aaa", 200, 0.1)
    assert parse_samples(json.loads(window.export(0))).revisions["aaa"].requests == 3
    window.keep(["bbb"])
    assert set(parse_samples(json.loads(window.export(0))).revisions) == {"bbb"}


@pytest.mark.parametrize(("query", "after"), [("after=12", 12), ("x=1&after=0", 0), ("", None), ("after=-1", None)])
def test_parse_after(query: str, after: int | None) -> None:
    assert parse_after(query) == after


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"instance": "i", "last": 1, "revisions": {"a": {"requests": 1}}},
        [],
        {"instance": "i", "last": 1, "tokens": {"a": [1]}},
    ],
)
def test_a_malformed_window_is_a_value_error(body: object) -> None:
    with pytest.raises(ValueError, match="unreadable sample window"):
        parse_samples(body)


def test_observer_reads_a_step_from_its_first_read_on_and_restarts_with_the_router() -> None:
    """The observer against a real `SampleWindow` (the router's, without Serve around it)."""
    window = SampleWindow()
    window.keep(["can", "sta"])
    window.record("can", 200, 0.5)  # before the step's first read: not the step's
    window.record_tokens("can", 30, 7)

    def router(request: httpx.Request) -> httpx.Response:
        if request.headers.get(PIN_PROOF_HEADER) != "token-1":  # the router answers only the operator
            return httpx.Response(404)
        return httpx.Response(200, content=window.export(parse_after(request.url.query.decode())))

    probes = ProbeLoop()
    try:
        observer = RolloutObserver(probes, transport=httpx.MockTransport(router))
        action = ObserveMetrics("can", "sta", "2026-01-01T00:00:00Z")

        def read() -> LiveSamples:
            """One read, started as a pass starts it, and its result as a later pass takes it."""
            observer.observe_live("http://router", action, pin_token="token-1")
            deadline = time.monotonic() + 10
            while (live := observer.take()[1]) is None:
                assert time.monotonic() < deadline, "no samples read"
                time.sleep(0.01)
            return live

        assert read().canary.requests == 0  # the first read only takes the cursor
        window.record("can", 200, 0.2)
        window.record_tokens("can", 12, 5)
        window.record("sta", 200, 0.1)
        window.record_tokens("sta", 10, 4)
        live = read()
        assert live.canary.latency_ms == (200.0,) and live.stable.latency_ms == (100.0,)
        # Tokens are counted, not sampled: the totals since the first read, exactly.
        assert (live.canary.prompt_tokens, live.canary.completion_tokens) == (12, 5)
        assert (live.stable.prompt_tokens, live.stable.completion_tokens) == (10, 4)
        window.record_tokens("can", 1, 1)
        assert read().canary.completion_tokens == 6
        window.instance = "restarted"  # a new router: its window is read from its start on the next read
        assert read().canary.requests == 0
        assert observer.cursor == ("can", "2026-01-01T00:00:00Z", "restarted", 0)
        assert observer.token_base == {}  # a restarted router counts its tokens from zero
    finally:
        probes.close()


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ('{"choices": [{"text": " Paris"}]}', " Paris"),
        ('{"choices": [{"delta": {"content": "Hi"}}]}', "Hi"),
        ('{"choices": [{"delta": {"role": "assistant"}}]}', ""),
        ("[DONE]", ""),
    ],
)
def test_stream_chunks(data: str, text: str) -> None:
    assert chunk_text(data) == text


def test_an_error_chunk_is_an_error() -> None:
    with pytest.raises(StreamError, match="engine died"):
        chunk_text('{"error": {"message": "engine died", "code": 500}}')


def test_validation_warms_up_each_revision_then_pairs_canary_and_stable_prompts() -> None:
    """The router is an `httpx.MockTransport` here (the HTTP boundary): it records which revision each
    pinned request named and streams a one-chunk answer."""
    seen: list[tuple[str, str]] = []

    def router(request: httpx.Request) -> httpx.Response:
        prompt = json.loads(request.content)["prompt"]
        assert request.headers[PIN_PROOF_HEADER] == "token-1"
        seen.append((request.headers[REVISION_HEADER], prompt))
        chunk = json.dumps({"choices": [{"text": f"answer to {prompt}"}]})
        headers = {**SSE, REVISION_HEADER: request.headers[REVISION_HEADER]}
        return httpx.Response(200, text=f"data: {chunk}\n\ndata: [DONE]\n\n", headers=headers)

    prompts = [GoldenPrompt(name=n, prompt=n) for n in ("p1", "p2")]
    run = asyncio.run(
        run_validation(
            "http://router",
            prompts,
            "tiny",
            "canary",
            "stable",
            pin_token="token-1",
            transport=httpx.MockTransport(router),
        )
    )

    assert seen == [
        ("canary", "p1"),  # warm-ups, untimed
        ("stable", "p1"),
        ("canary", "p1"),
        ("stable", "p1"),
        ("canary", "p2"),
        ("stable", "p2"),
    ]
    assert [o.answer for o in run.outcomes] == ["answer to p1", "answer to p2"]
    assert [o.name for o in run.baseline] == ["p1", "p2"] and run.baseline_revision == "stable"


def test_an_error_chunk_after_a_200_fails_the_prompt() -> None:
    """vLLM reports an engine failure mid-stream as a `data: {"error": …}` chunk after a 200."""

    def router(request: httpx.Request) -> httpx.Response:
        good = json.dumps({"choices": [{"text": "Par"}]})
        bad = json.dumps({"error": {"message": "engine dead", "code": 500}})
        return httpx.Response(200, text=f"data: {good}\n\ndata: {bad}\n\n", headers={**SSE, REVISION_HEADER: "c"})

    run = asyncio.run(
        run_validation(
            "http://r",
            [GoldenPrompt(name="p", prompt="p")],
            "m",
            "c",
            None,
            pin_token="t",
            transport=httpx.MockTransport(router),
        )
    )
    assert run.outcomes[0].error is not None and "engine dead" in run.outcomes[0].error


def test_the_deadline_bounds_the_whole_run_not_each_read() -> None:
    """A revision that trickles a token every 50 ms never trips a per-read timeout; the run's total
    deadline ends it and the prompts left count as errors."""

    async def trickle() -> AsyncIterator[bytes]:
        chunk = json.dumps({"choices": [{"text": "x"}]})
        for _ in range(1000):
            await asyncio.sleep(0.05)
            yield f"data: {chunk}\n\n".encode()

    def router(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=trickle(), headers={**SSE, REVISION_HEADER: request.headers[REVISION_HEADER]}
        )

    prompts = [GoldenPrompt(name=n, prompt=n) for n in ("p1", "p2", "p3")]
    started = time.monotonic()
    run = asyncio.run(
        run_validation(
            "http://r", prompts, "m", "c", "s", pin_token="t", deadline_s=0.5, transport=httpx.MockTransport(router)
        )
    )
    assert time.monotonic() - started < 5
    assert all(o.error is not None and "pin" not in o.error for o in (*run.outcomes, *run.baseline))
    assert [o.name for o in run.outcomes] == ["p1", "p2", "p3"]


def test_an_answer_from_another_revision_fails_the_prompt() -> None:
    """A router that ignored the pin (e.g. an older router without the operator's digest) answers from
    the weighted revision: that answer must not count for the pinned one."""

    def router(request: httpx.Request) -> httpx.Response:
        chunk = json.dumps({"choices": [{"text": "Paris"}]})
        return httpx.Response(
            200, text=f"data: {chunk}\n\ndata: [DONE]\n\n", headers={**SSE, REVISION_HEADER: "stable"}
        )

    prompts = [GoldenPrompt(name="p1", prompt="p1")]
    run = asyncio.run(
        run_validation(
            "http://router", prompts, "tiny", "canary", None, pin_token="t", transport=httpx.MockTransport(router)
        )
    )
    assert run.outcomes[0].error is not None and "not honoured" in run.outcomes[0].error


def test_shadow_counts_read_back_as_the_router_exports_them() -> None:
    """The contract of `GET /slm/shadow`: the router's `ShadowRecorder.export` parses into the
    `ShadowWindow` the state machine judges; outside a phase there is none."""
    config = ShadowConfig(
        revision="b",
        app_name="rev-b",
        epoch="2026-12-03T10:00:00Z",
        fraction=1.0,
        comparison="exact",
        max_rps=10,
        max_in_flight=2,
        timeout_s=5,
    )
    recorder = ShadowRecorder.start(config, now=0.0)
    for canary in (" Paris", " Madrid"):
        assert recorder.admit(0.0, now=0.0)
        recorder.record("Capital of France?", Answer(200, " Paris", 0.1), Answer(200, canary, 0.3))
    window = parse_shadow(json.loads(json.dumps(recorder.export())))
    assert window is not None
    assert (window.revision, window.epoch, window.pairs, window.agreed, window.copies) == ("b", config.epoch, 2, 1, 2)
    assert window.latency_ms == ((100.0, 300.0), (100.0, 300.0))
    assert [(w.prompt, w.stable, w.canary) for w in window.worst] == [("Capital of France?", " Paris", " Madrid")]
    assert parse_shadow({"revision": None}) is None
    with pytest.raises(ValueError, match="unreadable shadow"):
        parse_shadow({"revision": "b"})


def test_observer_reads_adapter_state_and_validates_one_version_by_its_engine_name() -> None:
    """The router is an `httpx.MockTransport` (the HTTP boundary): `GET /slm/adapters` answers the
    engines' state; a golden prompt must name the version (`atlas@v2`) and be pinned to the stable."""
    asked: list[tuple[str, str]] = []

    def router(request: httpx.Request) -> httpx.Response:
        if request.headers.get(PIN_PROOF_HEADER) != "token-1":
            return httpx.Response(404)
        if request.url.path == ADAPTERS_PATH:
            state = {"loaded": ["atlas@v1", "atlas@v2"], "errors": {"atlas@v3": "rank 64 > 8"}, "revision": "sta"}
            return httpx.Response(200, json=state)
        body = json.loads(request.content)
        asked.append((request.headers[REVISION_HEADER], body["model"]))
        chunk = json.dumps({"choices": [{"text": "Quito"}]})
        headers = {**SSE, REVISION_HEADER: request.headers[REVISION_HEADER]}
        return httpx.Response(200, text=f"data: {chunk}\n\ndata: [DONE]\n\n", headers=headers)

    probes = ProbeLoop()
    try:
        observer = RolloutObserver(probes, transport=httpx.MockTransport(router))
        observer.observe_adapters("http://router", pin_token="token-1")
        prompt = GoldenPrompt(name="capital", prompt="Capital?", adapter="atlas")
        action = ValidateAdapter("atlas", "v2", "v1", "sta", (prompt,))
        observer.run_adapter_validation("http://router", spec(), action, pin_token="token-1")
        deadline = time.monotonic() + 10
        while not (taken := observer.take_adapters()).validation:
            assert time.monotonic() < deadline, "no adapter validation finished"
            time.sleep(0.01)
        assert taken.loaded == {"atlas@v1", "atlas@v2"} and taken.load_errors == {"atlas@v3": "rank 64 > 8"}
        run = taken.validation["atlas@v2"]
        assert run.revision == "atlas@v2" and [o.answer for o in run.outcomes] == ["Quito"]
        assert set(asked) == {("sta", "atlas@v2")}  # warm-up and prompt: that version, on the stable
        assert observer.take_adapters().validation == {}  # handed over once; the state is kept
    finally:
        probes.close()


@pytest.mark.parametrize("body", [{}, {"loaded": ["a"]}, {"loaded": ["a"], "errors": ["a"]}])
def test_a_malformed_adapter_state_is_a_value_error(body: object) -> None:
    with pytest.raises(ValueError, match="malformed adapter state"):
        parse_adapter_state(body)
