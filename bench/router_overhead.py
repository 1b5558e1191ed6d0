"""What the router costs: the tiny model behind vLLM's own OpenAI server vs. behind the router.

In steady state the router runs inside the stable revision's engine replicas and serves that revision
in-process, so what is measured is the Serve front end plus the router's own work per request. The
Serve applications are `build_serve_config(examples/tiny.yaml)`: what `slm serve` deploys.

All runs use the same model, engine settings and core binding, one after the other (never side by
side: on 2 cores they would fight), and the same closed-loop load (async httpx, `--concurrency`
clients, non-streaming completions of `--max-tokens` tokens with ignore_eos, for `--seconds`), then a
concurrency-1 run for latency alone. CPU time of the serving processes (this script's descendants,
so not the load generator nor anything else on the machine) gives CPU-ms per request.

Designs: HAProxy in front of direct ingress (`slm_serving.local.FrontEnd.HAPROXY`, what `slm serve`
and a RayService use by default), in steady state and on the rollout path (`/v1` withdrawn, all
through the router application, as while a canary is live: one Serve handle call more); Serve's
Python proxy (`FrontEnd.SERVE_PROXY`, the switch back); and `RAY_SERVE_THROUGHPUT_OPTIMIZED=1` with
the client on the stable replica's own port (direct ingress, no front end at all). Bare vLLM is
measured first and again last; each design is compared with the mean of the two (shared machines
drift: `bare_rps_before_after` shows by how much). The headline numbers are the default design's;
all designs are in `designs`.

Usage: python bench/router_overhead.py [--concurrency 16] [--seconds 20] [--max-tokens 16]
Last line: {"throughput_ratio": ..., "added_p50_ms": ..., "added_p99_ms": ..., "design": ...,
"cpu_ms_per_request": {"bare": ..., "ours": ...}, ...}
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
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from slm_operator.api.validation import parse_deployment
from slm_operator.builder.serve_config import build_serve_config
from slm_serving.config import API_ROUTE_PREFIX, ENGINE_DEPLOYMENT_NAME, ROUTER_APP_NAME, FrontEnd, ServeConfigV2
from slm_serving.local import KV_CACHE_GIB, LocalServe, free_port
from slm_serving.tiny_models import ensure_tiny_model

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tiny.yaml"
MODEL = "tiny"
DIRECT_INGRESS_PORTS = (30000, 31000)
"""Ray Serve 2.60's default range for direct-ingress replica ports."""
THROUGHPUT_OPTIMIZED = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
DEFAULT_DESIGN = "haproxy"
"""What `slm serve` and the RayService pods use unless told otherwise: the headline figures are its."""


def serve_config() -> ServeConfigV2:
    """What `slm serve examples/tiny.yaml` deploys in steady state: the router app (`/`) and one
    revision, which takes `/v1` itself (engine args as in `bare_vllm`)."""
    return build_serve_config(parse_deployment(yaml.safe_load(EXAMPLE.read_text())).spec, None)


def rollout_path_config() -> ServeConfigV2:
    """The same applications with `/v1` withdrawn, as while a canary is live: all through the router."""
    config = serve_config()
    apps = tuple(
        app if app.name == ROUTER_APP_NAME else app.model_copy(update={"route_prefix": None})
        for app in config.applications
    )
    return config.model_copy(update={"applications": apps})


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
    """The stable replica's own HTTP port (direct ingress, `RAY_SERVE_THROUGHPUT_OPTIMIZED=1`)."""
    stable = next(
        app for app in local.details()["applications"].values() if app.get("route_prefix") == API_ROUTE_PREFIX
    )
    pid = stable["deployments"][ENGINE_DEPLOYMENT_NAME]["replicas"][0]["pid"]
    for conn in psutil.Process(pid).net_connections():
        if conn.status == psutil.CONN_LISTEN and DIRECT_INGRESS_PORTS[0] <= conn.laddr.port < DIRECT_INGRESS_PORTS[1]:
            return f"http://127.0.0.1:{conn.laddr.port}"
    raise RuntimeError("the stable replica listens on no direct-ingress port")


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


def averaged(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The mean of two `measure` results, figure by figure."""
    return {load: {key: (first[load][key] + second[load][key]) / 2 for key in first[load]} for load in first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    ensure_tiny_model("good")
    routed: dict[str, dict[str, Any]] = {}
    with bare_vllm() as url:
        bare_before = measure(url, args)
    print("bare vLLM:", json.dumps(bare_before), flush=True)
    with LocalServe() as local:  # the default front end: HAProxy
        local.apply(serve_config())
        routed["haproxy"] = measure(local.url, args)
        local.apply(rollout_path_config())
        time.sleep(5)  # HAProxy picks up the withdrawn route
        routed["haproxy-rollout-path"] = measure(local.url, args)
    with LocalServe(front_end=FrontEnd.SERVE_PROXY) as local:
        local.apply(serve_config())
        routed["serve-proxy"] = measure(local.url, args)
    with LocalServe(front_end=FrontEnd.SERVE_PROXY, serve_env=THROUGHPUT_OPTIMIZED) as local:
        local.apply(serve_config())
        routed["throughput-optimized-direct-ingress"] = measure(direct_ingress_url(local), args)
    with bare_vllm() as url:  # again at the end: shared machines drift, the reference is the mean of both
        bare_after = measure(url, args)
    print("bare vLLM again:", json.dumps(bare_after), flush=True)

    bare = averaged(bare_before, bare_after)
    results = [summary(name, bare, figures) for name, figures in routed.items()]
    for result in results:
        print(json.dumps(result), flush=True)
    best = next(r for r in results if r["design"] == DEFAULT_DESIGN)
    print(
        json.dumps(
            {
                "throughput_ratio": best["throughput_ratio"],
                "added_p50_ms": best["added_p50_ms"],
                "added_p99_ms": best["added_p99_ms"],
                "design": best["design"],
                "bare_rps": round(bare["loaded"]["rps"], 1),
                "bare_rps_before_after": [
                    round(bare_before["loaded"]["rps"], 1),
                    round(bare_after["loaded"]["rps"], 1),
                ],
                "bare_cpu_ms_per_request": round(bare["loaded"]["cpu_ms_per_request"], 2),
                "cpu_ms_per_request": {
                    "bare": round(bare["loaded"]["cpu_ms_per_request"], 2),
                    "ours": best["router_cpu_ms_per_request"],
                },
                "bare_p50_ms_c1": round(bare["c1"]["p50_ms"], 2),
                "designs": results,
                "concurrency": args.concurrency,
                "max_tokens": args.max_tokens,
            }
        )
    )


if __name__ == "__main__":
    main()
