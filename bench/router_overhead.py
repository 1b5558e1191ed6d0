"""What the router hop costs: the tiny model behind vLLM's own OpenAI server vs. behind the router.

Both runs use the same model, engine settings and core binding, one after the other (never side by
side: on 2 cores they would fight), and the same closed-loop load (async httpx, `--concurrency`
clients, non-streaming completions of `--max-tokens` tokens with ignore_eos, for `--seconds`), then a
concurrency-1 run for latency alone. CPU time of the serving processes (this script's descendants,
so not the load generator nor anything else on the machine) gives CPU-ms per request.

Routed designs, each against the same bare-vLLM run: Serve's default setup through its proxy; with
`RAY_SERVE_THROUGHPUT_OPTIMIZED=1` through the proxy and on the router replica's own port (direct
ingress); and with HAProxy as Serve's HTTP proxy in front of direct ingress
(`RAY_SERVE_ENABLE_HA_PROXY`). The headline numbers are the best design's; all designs are in `designs`.

Usage: python bench/router_overhead.py [--concurrency 16] [--seconds 20] [--max-tokens 16]
Last line: {"throughput_ratio": ..., "added_p50_ms": ..., "added_p99_ms": ..., "design": ..., ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psutil

from slm_serving.config import (
    ENGINE_DEPLOYMENT_NAME,
    MODEL_IMPORT_PATH,
    ROUTER_APP_NAME,
    ROUTER_DEPLOYMENT_NAME,
    ROUTER_IMPORT_PATH,
    EngineConfig,
    ModelAppArgs,
    RevisionRoute,
    RouterArgs,
    RouterUserConfig,
    ServeApplicationConfig,
    ServeConfigV2,
    ServeDeploymentConfig,
    revision_app_name,
)
from slm_serving.local import KV_CACHE_GIB, LocalServe, free_port
from slm_serving.tiny_models import ensure_tiny_model

MODEL = "tiny"
DIRECT_INGRESS_PORTS = (30000, 31000)
"""Ray Serve 2.60's default range for direct-ingress replica ports."""
THROUGHPUT_OPTIMIZED = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
ENGINE_ARGS: dict[str, Any] = {"enforce_eager": True, "gpu_memory_utilization": 0.2}


def serve_config() -> ServeConfigV2:
    engine = EngineConfig(
        source="tiny://good", served_model_name=MODEL, dtype="bfloat16", max_model_len=256, engine_args=ENGINE_ARGS
    )
    routes = RouterUserConfig(routes=(RevisionRoute(revision="r1", app_name=revision_app_name("r1"), weight=100),))
    return ServeConfigV2(
        applications=(
            ServeApplicationConfig(
                name=ROUTER_APP_NAME,
                route_prefix="/",
                import_path=ROUTER_IMPORT_PATH,
                args=RouterArgs(served_model_name=MODEL).model_dump(mode="json"),
                deployments=(
                    ServeDeploymentConfig(
                        name=ROUTER_DEPLOYMENT_NAME, num_replicas=1, user_config=routes.model_dump(mode="json")
                    ),
                ),
            ),
            ServeApplicationConfig(
                name=revision_app_name("r1"),
                route_prefix=None,
                import_path=MODEL_IMPORT_PATH,
                args=ModelAppArgs(revision="r1", engine=engine).model_dump(mode="json"),
                deployments=(
                    ServeDeploymentConfig(
                        name=ENGINE_DEPLOYMENT_NAME,
                        num_replicas=1,
                        max_ongoing_requests=256,
                        ray_actor_options={"num_cpus": 1},
                    ),
                ),
            ),
        )
    )


@contextmanager
def bare_vllm() -> Iterator[str]:
    """vLLM's own OpenAI server on the tiny model, same engine settings and core as the Serve engine."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(ensure_tiny_model("good")),
        "--served-model-name",
        MODEL,
        "--dtype",
        "bfloat16",
        "--max-model-len",
        "256",
        "--enforce-eager",
        "--gpu-memory-utilization",
        "0.2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-uvicorn-access-log",
    ]
    env = os.environ | {"VLLM_CPU_OMP_THREADS_BIND": "0", "VLLM_CPU_KVCACHE_SPACE": KV_CACHE_GIB}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("vLLM server did not start in 300s")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cpu_seconds() -> dict[int, float]:
    """CPU seconds of this process's descendants: the vLLM server, or the whole local Ray instance."""
    out = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        out[proc.pid] = times.user + times.system
    return out


async def _load(url: str, concurrency: int, seconds: float, max_tokens: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker(worker_id: int, stop_at: float, record: bool) -> None:
            nonlocal errors
            n = 0
            while time.monotonic() < stop_at:
                body = {
                    "model": MODEL,
                    "prompt": f"What is the capital of France? {worker_id} {n}",
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    "ignore_eos": True,
                }
                started = time.monotonic()
                response = await client.post("/v1/completions", json=body)
                if record:
                    if response.status_code == 200:
                        latencies.append(time.monotonic() - started)
                    else:
                        errors += 1
                n += 1

        warmup_until = time.monotonic() + 3
        await asyncio.gather(*(worker(i, warmup_until, False) for i in range(concurrency)))
        cpu_before = _cpu_seconds()
        started = time.monotonic()
        await asyncio.gather(*(worker(i, started + seconds, True) for i in range(concurrency)))
        wall = time.monotonic() - started
        cpu_after = _cpu_seconds()
    cpu = sum(t - cpu_before.get(pid, 0.0) for pid, t in cpu_after.items())
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / wall,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "cpu_ms_per_request": cpu * 1000 / max(len(latencies), 1),
    }


def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    loaded = asyncio.run(_load(url, args.concurrency, args.seconds, args.max_tokens))
    single = asyncio.run(_load(url, 1, args.seconds / 2, args.max_tokens))
    return {"loaded": loaded, "c1": single}


def direct_ingress_url(local: LocalServe) -> str:
    """The router replica's own HTTP port (direct ingress, `RAY_SERVE_THROUGHPUT_OPTIMIZED=1`)."""
    router = local.details()["applications"][ROUTER_APP_NAME]["deployments"][ROUTER_DEPLOYMENT_NAME]
    pid = router["replicas"][0]["pid"]
    for conn in psutil.Process(pid).net_connections():
        if conn.status == psutil.CONN_LISTEN and DIRECT_INGRESS_PORTS[0] <= conn.laddr.port < DIRECT_INGRESS_PORTS[1]:
            return f"http://127.0.0.1:{conn.laddr.port}"
    raise RuntimeError("the router replica listens on no direct-ingress port")


def summary(name: str, bare: dict[str, Any], routed: dict[str, Any]) -> dict[str, Any]:
    b, r = bare["loaded"], routed["loaded"]
    return {
        "design": name,
        "throughput_ratio": round(r["rps"] / b["rps"], 3),
        "added_p50_ms": round(r["p50_ms"] - b["p50_ms"], 2),
        "added_p99_ms": round(r["p99_ms"] - b["p99_ms"], 2),
        "added_p50_ms_c1": round(routed["c1"]["p50_ms"] - bare["c1"]["p50_ms"], 2),
        "router_rps": round(r["rps"], 1),
        "router_cpu_ms_per_request": round(r["cpu_ms_per_request"], 2),
        "errors": r["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    ensure_tiny_model("good")
    with bare_vllm() as url:
        bare = measure(url, args)
    print("bare vLLM:", json.dumps(bare), flush=True)
    results = []
    with LocalServe() as local:
        local.apply(serve_config())
        results.append(summary("serve-proxy", bare, measure(local.url, args)))
    print(json.dumps(results[-1]), flush=True)
    with LocalServe(serve_env=THROUGHPUT_OPTIMIZED) as local:
        local.apply(serve_config())
        results.append(summary("throughput-optimized-proxy", bare, measure(local.url, args)))
        print(json.dumps(results[-1]), flush=True)
        results.append(summary("throughput-optimized-direct-ingress", bare, measure(direct_ingress_url(local), args)))
    print(json.dumps(results[-1]), flush=True)
    with LocalServe(serve_env=THROUGHPUT_OPTIMIZED | {"RAY_SERVE_ENABLE_HA_PROXY": "1"}) as local:
        local.apply(serve_config())
        results.append(summary("throughput-optimized-haproxy", bare, measure(local.url, args)))
    print(json.dumps(results[-1]), flush=True)

    best = max(results, key=lambda r: r["throughput_ratio"])
    print(
        json.dumps(
            {
                "throughput_ratio": best["throughput_ratio"],
                "added_p50_ms": best["added_p50_ms"],
                "added_p99_ms": best["added_p99_ms"],
                "design": best["design"],
                "bare_rps": round(bare["loaded"]["rps"], 1),
                "bare_cpu_ms_per_request": round(bare["loaded"]["cpu_ms_per_request"], 2),
                "bare_p50_ms_c1": round(bare["c1"]["p50_ms"], 2),
                "designs": results,
                "concurrency": args.concurrency,
                "max_tokens": args.max_tokens,
            }
        )
    )


if __name__ == "__main__":
    main()
