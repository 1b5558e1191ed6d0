"""Parsing what the shells observe: router metrics (Prometheus text) and streamed OpenAI answers."""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest

from slm_operator.api.models import GoldenPrompt
from slm_operator.probes import (
    RevisionCounters,
    _chunk_text,
    _quantile_ms,
    expand_metrics_urls,
    parse_router_counters,
    run_validation,
)
from slm_serving.config import PIN_PROOF_HEADER, REVISION_HEADER
from slm_serving.metrics import LATENCY_BUCKETS

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
# TYPE ray_other_metric gauge
ray_other_metric{revision="aaa"} 7.0
"""


def test_counters_are_summed_per_revision_over_endpoints_and_codes() -> None:
    counters = parse_router_counters(EXPOSITION)
    assert set(counters) == {"aaa", "bbb"}
    assert (counters["aaa"].requests, counters["aaa"].errors) == (100, 10)
    assert counters["bbb"].requests == 5
    assert counters["aaa"].latency_buckets == {0.1: 50, 0.5: 80, 1.0: 90, float("inf"): 90}


def test_difference_of_snapshots_gives_the_traffic_in_between() -> None:
    later = parse_router_counters(EXPOSITION)["aaa"]
    earlier = RevisionCounters(requests=40, errors=2, latency_buckets={0.1: 40, 0.5: 40, 1.0: 40, float("inf"): 40})
    metrics = later.minus(earlier)
    assert (metrics.requests, metrics.errors) == (60, 8)
    # 50 new observations: 10 ≤ 0.1 s, 30 in (0.1, 0.5], 10 in (0.5, 1.0]; p95 = rank 47.5 → in the last bucket.
    assert metrics.p95_latency_ms == pytest.approx(875.0)
    assert metrics.p95_ttft_ms is None


@pytest.mark.parametrize(
    ("buckets", "q", "expected_ms"),
    [
        ({0.1: 100.0, float("inf"): 100.0}, 0.5, 50.0),
        ({0.1: 0.0, 0.2: 100.0, float("inf"): 100.0}, 0.95, 195.0),
        ({0.1: 10.0, float("inf"): 100.0}, 0.95, 100.0),  # beyond the last finite bucket: its bound
        ({0.1: 0.0, float("inf"): 0.0}, 0.95, None),
        ({}, 0.95, None),
    ],
)
def test_quantile_is_prometheus_histogram_quantile(
    buckets: dict[float, float], q: float, expected_ms: float | None
) -> None:
    got = _quantile_ms(buckets, q)
    assert got == (pytest.approx(expected_ms) if expected_ms is not None else None)


@pytest.mark.parametrize(
    "latencies_s",
    [
        [0.095] * 40 + [0.6] * 2,  # two slow requests of 42: p95 is a normal one
        [0.08 + 0.001 * i for i in range(60)],  # 80-139 ms, spread out
        [0.1] * 19 + [0.9],  # 20 requests: p95 falls between the two
        [0.004, 0.012, 0.03, 0.2, 1.2, 7.0, 45.0],
    ],
)
def test_the_routers_buckets_keep_a_p95_estimate_within_their_spacing(latencies_s: list[float]) -> None:
    """The gate compares p95s that `_quantile_ms` estimates from the router's histogram buckets: the
    estimate and the true p95 share a bucket, so they differ by at most the buckets' spacing (1.67x)."""
    buckets = {bound: float(sum(1 for x in latencies_s if x <= bound)) for bound in [*LATENCY_BUCKETS, float("inf")]}
    ordered = sorted(latencies_s)
    true_p95 = ordered[math.ceil(0.95 * len(ordered)) - 1] * 1000
    estimate = _quantile_ms(buckets, 0.95)
    assert estimate is not None
    assert true_p95 / 1.67 <= estimate <= true_p95 * 1.67, (estimate, true_p95)


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
        assert request.headers[PIN_PROOF_HEADER] == "token-1"
        seen.append((request.headers[REVISION_HEADER], prompt))
        chunk = json.dumps({"choices": [{"text": f"answer to {prompt}"}]})
        headers = {REVISION_HEADER: request.headers[REVISION_HEADER]}
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


def test_an_answer_from_another_revision_fails_the_prompt() -> None:
    """A router that ignored the pin (e.g. an older router without the operator's digest) answers from
    the weighted revision: that answer must not count for the pinned one."""

    def router(request: httpx.Request) -> httpx.Response:
        chunk = json.dumps({"choices": [{"text": "Paris"}]})
        return httpx.Response(200, text=f"data: {chunk}\n\ndata: [DONE]\n\n", headers={REVISION_HEADER: "stable"})

    prompts = [GoldenPrompt(name="p1", prompt="p1")]
    run = asyncio.run(
        run_validation(
            "http://router", prompts, "tiny", "canary", None, pin_token="t", transport=httpx.MockTransport(router)
        )
    )
    assert run.outcomes[0].error is not None and "not honoured" in run.outcomes[0].error
