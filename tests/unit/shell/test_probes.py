"""Parsing what the shells observe: router metrics (Prometheus text), the router's sample window and
streamed OpenAI answers; the observer's cursor over that window."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from slm_operator.api.models import GoldenPrompt
from slm_operator.observer import RolloutObserver
from slm_operator.probes import _chunk_text, expand_metrics_urls, parse_router_counters, parse_samples, run_validation
from slm_operator.rollout.actions import ObserveMetrics
from slm_operator.rollout.live import RevisionSamples
from slm_serving.samples import SampleWindow, parse_after

EXPOSITION = """\
# HELP ray_slm_router_requests_total Requests answered by the router.
# TYPE ray_slm_router_requests_total counter
ray_slm_router_requests_total{revision="aaa",endpoint="completions",code="200"} 90.0
ray_slm_router_requests_total{revision="aaa",endpoint="chat",code="500"} 10.0
ray_slm_router_requests_total{revision="bbb",endpoint="completions",code="200"} 5.0
# TYPE ray_slm_router_errors_total counter
ray_slm_router_errors_total{revision="aaa",endpoint="chat",code="500"} 10.0
# TYPE ray_slm_router_request_latency_seconds histogram
ray_slm_router_request_latency_seconds_bucket{revision="aaa",endpoint="completions",le="0.1"} 50.0
ray_slm_router_request_latency_seconds_bucket{revision="aaa",endpoint="completions",le="0.5"} 80.0
ray_slm_router_request_latency_seconds_bucket{revision="aaa",endpoint="completions",le="1.0"} 90.0
ray_slm_router_request_latency_seconds_bucket{revision="aaa",endpoint="completions",le="+Inf"} 90.0
ray_slm_router_request_latency_seconds_count{revision="aaa",endpoint="completions"} 90.0
ray_slm_router_request_latency_seconds_sum{revision="aaa",endpoint="completions"} 20.0
# TYPE ray_slm_router_completion_tokens_total counter
ray_slm_router_completion_tokens_total{revision="aaa"} 720.0
ray_slm_router_prompt_tokens_total{revision="aaa"} 900.0
# TYPE ray_other_metric gauge
ray_other_metric{revision="aaa"} 7.0
"""


def test_counters_are_summed_per_revision_over_endpoints_and_codes() -> None:
    counters = parse_router_counters(EXPOSITION)
    assert set(counters) == {"aaa", "bbb"}
    assert (counters["aaa"].requests, counters["aaa"].errors) == (100, 10)
    assert (counters["aaa"].prompt_tokens, counters["aaa"].completion_tokens) == (900, 720)
    assert counters["bbb"].requests == 5


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
    snapshot = parse_samples(json.loads(window.export(cursor)))
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


@pytest.mark.parametrize("body", [{}, {"instance": "i", "last": 1, "revisions": {"a": {"requests": 1}}}, []])
def test_a_malformed_window_is_a_value_error(body: object) -> None:
    with pytest.raises(ValueError, match="unreadable sample window"):
        parse_samples(body)


def test_observer_reads_a_step_from_its_first_read_on_and_restarts_with_the_router() -> None:
    """The observer against a real `SampleWindow` (the router's, without Serve around it)."""
    window = SampleWindow()
    window.keep(["can", "sta"])
    window.record("can", 200, 0.5)  # before the step's first read: not the step's

    def router(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=window.export(parse_after(request.url.query.decode())))

    observer = RolloutObserver(transport=httpx.MockTransport(router))
    action = ObserveMetrics("can", "sta", "2026-01-01T00:00:00Z")
    observer.observe_live("http://router", action)
    assert observer.take()[1] is not None and observer.live is None
    window.record("can", 200, 0.2)
    window.record("sta", 200, 0.1)
    observer.observe_live("http://router", action)
    live = observer.take()[1]
    assert live is not None and live.canary.latency_ms == (200.0,) and live.stable.latency_ms == (100.0,)
    window.instance = "restarted"  # a new router: its window is read from its start on the next read
    observer.observe_live("http://router", action)
    live = observer.take()[1]
    assert live is not None and live.canary.requests == 0
    assert observer.cursor == ("can", "2026-01-01T00:00:00Z", "restarted", 0)


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ('data: {"choices": [{"text": " Paris"}]}', " Paris"),
        ('data: {"choices": [{"delta": {"content": "Hi"}}]}', "Hi"),
        ('data: {"choices": [{"delta": {"role": "assistant"}}]}', ""),
        ("data: [DONE]", ""),
        (": keep-alive", ""),
        ("", ""),
    ],
)
def test_stream_chunks(line: str, text: str) -> None:
    assert _chunk_text(line) == text


def test_validation_warms_up_each_revision_then_pairs_canary_and_stable_prompts() -> None:
    """The router is an `httpx.MockTransport` here (the HTTP boundary): it records which revision each
    pinned request named and streams a one-chunk answer."""
    seen: list[tuple[str, str]] = []

    def router(request: httpx.Request) -> httpx.Response:
        prompt = json.loads(request.content)["prompt"]
        seen.append((request.headers["x-slm-revision"], prompt))
        chunk = json.dumps({"choices": [{"text": f"answer to {prompt}"}]})
        return httpx.Response(200, text=f"data: {chunk}\n\ndata: [DONE]\n\n")

    prompts = [GoldenPrompt(name=n, prompt=n) for n in ("p1", "p2")]
    run = asyncio.run(
        run_validation("http://router", prompts, "tiny", "canary", "stable", transport=httpx.MockTransport(router))
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


@pytest.mark.parametrize(
    ("template", "pod_ips", "expected"),
    [
        (
            "http://{pod_ip}:8080/metrics",
            ["10.0.0.1", "10.0.0.2"],
            ["http://10.0.0.1:8080/metrics", "http://10.0.0.2:8080/metrics"],
        ),
        ("http://{pod_ip}:8080/metrics", [], []),
        ("http://{pod_ip}:9/m", ["fd00::1"], ["http://[fd00::1]:9/m"]),
        (
            "http://{name}-head-svc.{namespace}.svc:8080/metrics",
            ["10.0.0.1"],
            ["http://tiny-head-svc.prod.svc:8080/metrics"],
        ),
        (" http://a/m , ,http://{pod_ip}/m", ["10.0.0.1"], ["http://a/m", "http://10.0.0.1/m"]),
    ],
)
def test_expand_metrics_urls(template: str, pod_ips: list[str], expected: list[str]) -> None:
    assert expand_metrics_urls(template, "tiny", "prod", pod_ips) == expected
