"""Traffic through the router: weighted split, pins, weights changed live (no restart), metrics, and
the HTTP route moving between the router application and the stable revision's own replicas."""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from slm_serving.config import (
    ENGINE_DEPLOYMENT_NAME,
    PIN_PROOF_HEADER,
    REVISION_HEADER,
    ROUTER_APP_NAME,
    ROUTER_DEPLOYMENT_NAME,
    RevisionRoute,
    RouterUserConfig,
    ServeConfigV2,
    revision_app_name,
)
from slm_serving.local import LocalServe
from slm_serving.pins import pin_token_digest
from slm_serving.samples import SAMPLES_PATH

from .conftest import BAD, DEFAULT_WEIGHTS, GOOD, MODEL, PIN_TOKEN, build_config, engine_application, pinned

pytestmark = pytest.mark.serving

BODY = {"model": MODEL, "prompt": "What is the capital of Chile?", "max_tokens": 1, "temperature": 0}


def _send(url: str, n: int, headers: dict[str, str] | None = None) -> list[httpx.Response]:
    with httpx.Client(base_url=url, timeout=60) as client, ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: client.post("/v1/completions", json=BODY, headers=headers), range(n)))


def _served_by(responses: list[httpx.Response]) -> Counter[str]:
    assert {r.status_code for r in responses} == {200}
    return Counter(r.headers[REVISION_HEADER] for r in responses)


def _replicas(local: LocalServe) -> dict[str, list[tuple[str, int]]]:
    """(actor id, pid) of every replica, per application/deployment."""
    out = {}
    for app_name, app in local.details()["applications"].items():
        for dep_name, dep in app["deployments"].items():
            out[f"{app_name}/{dep_name}"] = sorted((r["actor_id"], r["pid"]) for r in dep["replicas"])
    return out


def _eventually(check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    """Retry `check` until it returns a truthy value (config changes apply asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_weights_split_traffic_within_binomial_bounds(local_serve: LocalServe) -> None:
    n = 300
    p = DEFAULT_WEIGHTS[GOOD] / 100
    counts = _served_by(_send(local_serve.url, n))
    assert set(counts) <= {GOOD, BAD}
    margin = 4.5 * math.sqrt(n * p * (1 - p))  # false-failure odds ~1e-5
    assert abs(counts[GOOD] - n * p) <= margin, counts


def test_pin_overrides_weights(local_serve: LocalServe) -> None:
    assert _served_by(_send(local_serve.url, 20, pinned(BAD))) == Counter({BAD: 20})


def test_unknown_and_unreachable_revisions(local_serve: LocalServe) -> None:
    unknown = httpx.post(f"{local_serve.url}/v1/completions", json=BODY, headers=pinned("nope"), timeout=30)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "revision_not_found"


def test_user_config_change_reconfigures_without_restart(local_serve: LocalServe) -> None:
    before = _replicas(local_serve)
    assert before[f"{ROUTER_APP_NAME}/{ROUTER_DEPLOYMENT_NAME}"]
    try:
        local_serve.apply(build_config({GOOD: 0, BAD: 100}))
        assert _eventually(lambda: _served_by(_send(local_serve.url, 20)) == Counter({BAD: 20}))

        local_serve.apply(build_config({GOOD: 0, BAD: 0}))

        def unpinned_refused() -> bool:
            response = httpx.post(f"{local_serve.url}/v1/completions", json=BODY, timeout=30)
            return response.status_code == 503 and response.json()["error"]["code"] == "no_revision"

        assert _eventually(unpinned_refused)
        # weight 0 still serves pinned requests (canary validation before any traffic)
        assert _served_by(_send(local_serve.url, 4, pinned(GOOD))) == Counter({GOOD: 4})
    finally:
        local_serve.apply(build_config(DEFAULT_WEIGHTS))
    assert _eventually(lambda: GOOD in _served_by(_send(local_serve.url, 20)))
    assert _replicas(local_serve) == before  # same actors, same processes: nothing restarted


def test_route_to_missing_application_is_503(local_serve: LocalServe) -> None:
    try:
        local_serve.apply(build_config({**DEFAULT_WEIGHTS, "ghost": 0}))

        def ghost_refused() -> bool:
            r = httpx.post(f"{local_serve.url}/v1/completions", json=BODY, headers=pinned("ghost"), timeout=30)
            return r.status_code == 503 and r.json()["error"]["code"] == "internal_error"

        assert _eventually(ghost_refused)
    finally:
        local_serve.apply(build_config(DEFAULT_WEIGHTS))


def _counter(text: str, metric: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(metric + "{"):
            continue
        label_text = line[len(metric) + 1 : line.index("}")]
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _window_tokens(local: LocalServe) -> dict[str, tuple[int, int]]:
    """The router's running token totals per revision (`GET /slm/samples`, what the cost per token
    uses; it answers the operator only, so the read carries the pin token)."""
    body = httpx.get(f"{local.url}{SAMPLES_PATH}", headers={PIN_PROOF_HEADER: PIN_TOKEN}, timeout=10).json()
    return {name: (prompt, completion) for name, (prompt, completion) in body["tokens"].items()}


def _token_sums(tokens: dict[str, tuple[int, int]]) -> tuple[int, int]:
    return sum(p for p, _ in tokens.values()), sum(c for _, c in tokens.values())


def test_per_revision_metrics_are_scrapeable(local_serve: LocalServe) -> None:
    """User traffic is counted per revision; the operator's pinned requests apart (the rollout gate
    must not judge a revision by them). The router's sample window keeps exact token totals of user
    traffic for the cost per token (streamed answers included: their usage arrives after the last chunk)."""
    before = _window_tokens(local_serve)
    _send(local_serve.url, 6, pinned(BAD))
    _send(local_serve.url, 10)
    stream_body = {**BODY, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{local_serve.url}/v1/completions", json=stream_body, timeout=60) as r:
        r.read()
    httpx.post(f"{local_serve.url}/v1/completions", json={**BODY, "model": "x"}, timeout=30)
    prompt_before, completion_before = _token_sums(before)
    prompt_after, completion_after = _token_sums(_window_tokens(local_serve))
    # 10 answers of max_tokens 1 and one stream of 1-4 tokens; the 6 pinned requests are not user traffic.
    assert 11 <= completion_after - completion_before <= 14
    assert prompt_after - prompt_before >= 11

    def scrape() -> str | None:
        text = httpx.get(local_serve.metrics_url, timeout=10).text
        ready = (
            _counter(text, "ray_slm_router_validation_requests_total", revision=BAD, code="200") >= 6
            and _counter(text, "ray_slm_router_requests_total", code="200") >= 11
            and _counter(text, "ray_slm_router_time_to_first_token_seconds_count") >= 1
            and _counter(text, "ray_slm_router_errors_total", code="404") >= 1
        )
        return text if ready else None

    text = _eventually(scrape, timeout_s=90)
    assert text, "router metrics never appeared on the Ray metrics endpoint"
    assert _counter(text, "ray_slm_router_completion_tokens_total") >= 10
    assert _counter(text, "ray_slm_router_prompt_tokens_total", revision=GOOD) >= 1
    assert _counter(text, "ray_slm_router_request_latency_seconds_count", endpoint="completions") >= 10
    assert _counter(text, "ray_slm_router_errors_total", revision="other", code="404") >= 1


def test_engine_reports_queue_metrics(local_serve: LocalServe) -> None:
    """The deployment publishes vLLM's waiting/running counts as Serve custom autoscaling metrics."""
    from ray import serve

    handle = serve.get_app_handle("rev-good")
    stats = handle.record_autoscaling_stats.remote().result(timeout_s=30)
    assert set(stats) == {"num_requests_waiting", "num_requests_running"}
    assert all(v >= 0 for v in stats.values())
    assert handle.queue_depth.remote().result(timeout_s=30) >= 0
    assert ENGINE_DEPLOYMENT_NAME == "LLMEngine"


def test_requests_waiting_on_a_retired_revision_are_answered_by_the_new_routes(local_serve: LocalServe) -> None:
    """A promotion removes the old revision's route and deletes its application in one config. Requests
    still queued for it (here: behind `max_ongoing_requests=1`) are routed again instead of waiting
    for a deleted application forever."""
    retiring = engine_application("retiring", "tiny://good")
    retiring = retiring.model_copy(
        update={"deployments": (retiring.deployments[0].model_copy(update={"max_ongoing_requests": 1}),)}
    )
    body = {**BODY, "max_tokens": 64, "ignore_eos": True}
    try:
        local_serve.apply(build_config({GOOD: 0, BAD: 0, "retiring": 100}, (retiring,)))
        with httpx.Client(base_url=local_serve.url, timeout=90) as client, ThreadPoolExecutor(12) as pool:
            pending = [pool.submit(client.post, "/v1/completions", json=body) for _ in range(12)]
            time.sleep(1.0)  # most of them now wait in the router for the one busy replica
            local_serve.apply(build_config({GOOD: 100, BAD: 0}), wait=False)
            responses = [future.result() for future in pending]
        served = _served_by(responses)
        assert set(served) <= {"retiring", GOOD}, served
        assert served[GOOD] > 0, served  # rerouted, not served by the deleted application
    finally:
        local_serve.apply(build_config(DEFAULT_WEIGHTS))


def _with_router_routes(config: ServeConfigV2, weights: dict[str, int]) -> ServeConfigV2:
    """`config` with other routes in the router application only: shows which one answered HTTP."""
    routes = RouterUserConfig(
        served_model_name=MODEL,
        routes=tuple(RevisionRoute(revision=r, app_name=revision_app_name(r), weight=w) for r, w in weights.items()),
        pin_token_sha256=pin_token_digest(PIN_TOKEN),
        expose_revision=True,
    ).model_dump(mode="json")
    router, *revisions = config.applications
    assert router.name == ROUTER_APP_NAME
    router = router.model_copy(
        update={"deployments": (router.deployments[0].model_copy(update={"user_config": routes}),)}
    )
    return config.model_copy(update={"applications": (router, *revisions)})


def test_stable_revision_takes_v1_directly_and_gives_it_back_without_a_failed_request(local_serve: LocalServe) -> None:
    """Steady state: the stable revision's application takes `/v1` and its replicas serve it
    in-process; a rollout withdraws that route (everything through the router application's `/`) and a
    promotion or rollback adds it again. Under load, no request fails and no replica restarts. (The
    router application is given other weights than the engines, so the serving revision shows which
    one answered HTTP.)"""
    before = _replicas(local_serve)
    via_router = _with_router_routes(build_config({GOOD: 100, BAD: 0}), {GOOD: 0, BAD: 100})
    via_stable = _with_router_routes(build_config({GOOD: 100, BAD: 0}, direct=GOOD), {GOOD: 0, BAD: 100})
    outcomes: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=local_serve.url, timeout=60) as client:
            while not stop.is_set():
                try:
                    outcomes.append(client.post("/v1/completions", json=BODY).status_code)
                except httpx.HTTPError as error:
                    outcomes.append(type(error).__name__)

    try:
        local_serve.apply(via_router)
        assert _eventually(lambda: _served_by(_send(local_serve.url, 8)) == Counter({BAD: 8}))
        with ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(load) for _ in range(4)]
            try:
                local_serve.apply(via_stable, wait=False)
                assert _eventually(lambda: _served_by(_send(local_serve.url, 8)) == Counter({GOOD: 8}))
                # the stable's own router still reaches the other revision when pinned, and streams
                assert _served_by(_send(local_serve.url, 4, pinned(BAD))) == Counter({BAD: 4})
                stream_body = {**BODY, "max_tokens": 4, "stream": True}
                with httpx.stream("POST", f"{local_serve.url}/v1/completions", json=stream_body, timeout=60) as r:
                    assert r.status_code == 200 and r.headers[REVISION_HEADER] == GOOD
                    assert r.read().decode().rstrip().endswith("data: [DONE]")
                local_serve.apply(via_router, wait=False)
                assert _eventually(lambda: _served_by(_send(local_serve.url, 8)) == Counter({BAD: 8}))
                time.sleep(2)
            finally:
                stop.set()
                for client in clients:
                    client.result()
    finally:
        local_serve.apply(build_config(DEFAULT_WEIGHTS))
    assert outcomes and Counter(outcomes) == Counter({200: len(outcomes)}), Counter(outcomes)
    assert _replicas(local_serve) == before  # moving the route restarted nothing
