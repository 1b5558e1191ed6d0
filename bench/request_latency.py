"""Where the milliseconds of one request go at concurrency 1: client, Serve's front end, the replica, the router.

One request at a time (`--requests` of them per case, non-streaming completions of 1 and of 16 tokens,
ignore_eos) against bare vLLM's own server and then against `slm serve examples/tiny.yaml` in steady
state, once per front end (`--ingress`: Serve's Python proxy, HAProxy). For each case the client's p50,
and the means of the layers that time the same requests themselves (Prometheus histograms, deltas over
the run): Serve's HTTP proxy (`ray_serve_http_request_latency_ms`, the Python proxy only), the replica
(`ray_serve_deployment_processing_latency_ms` of `LLMEngine`), the router inside it
(`ray_slm_router_request_latency_seconds`). A driver-side Serve handle call to `LLMEngine.complete` (no
HTTP) gives the engine plus one handle hop.

Usage: python bench/request_latency.py [--requests 60] [--ingress proxy haproxy]
Last line: {"bare": {...}, "<ingress>": {"<tokens>": {"client_p50_ms", "proxy_ms", "replica_ms", "router_ms"}, ...}}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
from typing import Any

import httpx

from bench.router_overhead import MODEL, bare_vllm, serve_config
from slm_serving.config import API_ROUTE_PREFIX, ENGINE_DEPLOYMENT_NAME
from slm_serving.local import LocalServe

HISTOGRAMS = {
    "proxy_ms": ("ray_serve_http_request_latency_ms", 1.0),
    "replica_ms": ("ray_serve_deployment_processing_latency_ms", 1.0),
    "router_ms": ("ray_slm_router_request_latency_seconds", 1000.0),
}


def body(n: int, max_tokens: int) -> dict[str, Any]:
    return {"model": MODEL, "prompt": f"What is the capital of France? {n}", "max_tokens": max_tokens,
            "temperature": 0, "ignore_eos": True}  # fmt: skip


def sequential(url: str, requests: int, max_tokens: int) -> float:
    """Client p50 in ms of `requests` one-at-a-time completions (after 5 unrecorded ones)."""
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for n in range(requests + 5):
            started = time.perf_counter()
            client.post("/v1/completions", json=body(n, max_tokens)).raise_for_status()
            if n >= 5:
                latencies.append(time.perf_counter() - started)
    return statistics.median(latencies) * 1000


def histogram_sums(metrics_url: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of each histogram in `HISTOGRAMS`, summed over its series (for `LLMEngine` where
    the series name a deployment)."""
    text = httpx.get(metrics_url, timeout=10).text
    out = {}
    for key, (name, _) in HISTOGRAMS.items():
        totals = [0.0, 0.0]
        for i, suffix in enumerate(("_sum", "_count")):
            for match in re.finditer(rf"^{name}{suffix}(\{{[^}}]*\}})? (\S+)$", text, re.M):
                labels = match.group(1) or ""
                if "deployment=" in labels and f'deployment="{ENGINE_DEPLOYMENT_NAME}"' not in labels:
                    continue
                totals[i] += float(match.group(2))
        out[key] = (totals[0], totals[1])
    return out


def layered(local: LocalServe, requests: int, max_tokens: int) -> dict[str, float | None]:
    before = histogram_sums(local.metrics_url)
    p50 = sequential(local.url, requests, max_tokens)
    time.sleep(4)  # the metrics agent's report interval is 1 s; let the last requests arrive
    after = histogram_sums(local.metrics_url)
    result: dict[str, float | None] = {"client_p50_ms": round(p50, 2)}
    for key, (_, scale) in HISTOGRAMS.items():
        count = after[key][1] - before[key][1]
        result[key] = round((after[key][0] - before[key][0]) / count * scale, 2) if count else None
    return result


def handle_call(local: LocalServe, requests: int, max_tokens: int) -> float:
    """p50 in ms of `LLMEngine.complete` called from this driver through a Serve handle (no HTTP)."""
    from ray import serve

    app = next(
        name for name, app in local.details()["applications"].items() if app.get("route_prefix") == API_ROUTE_PREFIX
    )
    handle = serve.get_app_handle(app)

    async def run() -> float:
        latencies = []
        for n in range(requests + 5):
            started = time.perf_counter()
            await handle.complete.remote("completions", json.dumps(body(n, max_tokens)).encode())
            if n >= 5:
                latencies.append(time.perf_counter() - started)
        return statistics.median(latencies) * 1000

    return round(asyncio.run(run()), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--ingress", nargs="+", choices=["proxy", "haproxy"], default=["proxy", "haproxy"])
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with bare_vllm() as url:
        results["bare"] = {str(t): {"client_p50_ms": round(sequential(url, args.requests, t), 2)} for t in (1, 16)}
    print("bare", json.dumps(results["bare"]), flush=True)
    for ingress in args.ingress:
        with LocalServe(ingress=ingress) as local:
            local.apply(serve_config())
            figures: dict[str, Any] = {}
            for tokens in (1, 16):
                figures[str(tokens)] = layered(local, args.requests, tokens)
                figures[str(tokens)]["handle_call_ms"] = handle_call(local, args.requests, tokens)
            results[ingress] = figures
        print(ingress, json.dumps(figures), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
