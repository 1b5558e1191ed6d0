"""Autoscaling benchmark: the queue-depth policy against Ray Serve's default policy on one bursty trace.

Each policy gets its own private Ray + Serve (`LocalServe`, one after the other, never two at once)
serving the tiny model with the operator's own Serve config (`build_serve_config` from tiny.yaml with
autoscaling 1..2, targetQueueDepth 2, delays 2 s up / 10 s down, vLLM batch `MAX_NUM_SEQS`). The
default run differs in one field only: `policy_function` is Serve's default
(`target_ongoing_requests` = the same 2).

The trace is open loop (arrival times fixed in advance, Poisson with a fixed seed, identical for both
runs; latency counts from the scheduled arrival, so queueing in the client counts too): calm, then a
moderate phase (about half of one replica's measured capacity: vLLM batches it, nothing waits in its
queue), then a burst above one replica's capacity, then calm again. One replica's capacity is
measured once, in the first run, by closed-loop load at the batch size (after the same one-request
trickle both runs start with). Loopback only, bounded in requests and time.

Reported per policy: p95 latency, SLO attainment (share of requests answered 200 within `--slo-s`;
failures count as misses), replica-seconds (RUNNING engine replicas integrated from the trace start
until the trace ends or its last answer comes, whichever is later; polled from Serve every 0.5 s),
reaction (burst start → second replica RUNNING, i.e. its engine loaded and in Serve's routing set),
decision (burst start → Serve started the second replica's actor) and failed requests. Progress goes
to stderr; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import threading
import time
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from slm_operator.api.validation import parse_deployment
from slm_operator.builder.serve_config import build_serve_config
from slm_serving.config import ENGINE_DEPLOYMENT_NAME, QUEUE_DEPTH_POLICY, ROUTER_APP_NAME, ServeConfigV2
from slm_serving.local import LocalServe

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny.yaml"
DEFAULT_POLICY = "ray.serve.autoscaling_policy:default_autoscaling_policy"
"""Serve 2.60's own default (`DEFAULT_AUTOSCALING_POLICY_NAME`): the same as leaving `policy` out."""
MODEL = "tiny"
MAX_NUM_SEQS = 8
TARGET_QUEUE_DEPTH = 2
MAX_TOKENS = 32
CALM_RATE = 1.0
POLL_S = 0.5
REQUEST_TIMEOUT_S = 120.0
WARMUP_S = 15.0
STARTUP_TIMEOUT_S = 600.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- pure parts: config, trace, figures


def build_config(policy_function: str) -> ServeConfigV2:
    """tiny.yaml, autoscaled 1..2 on the given policy (LocalServe leaves such engines unbound from a core)."""
    document: dict[str, Any] = deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    document["spec"]["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": 2,
        "targetQueueDepth": TARGET_QUEUE_DEPTH,
        "upscaleDelaySeconds": 2,
        "downscaleDelaySeconds": 10,
    }
    document["spec"]["model"]["engineArgs"]["max_num_seqs"] = MAX_NUM_SEQS
    config = build_serve_config(parse_deployment(document).spec, None)
    apps = []
    for app in config.applications:
        if app.name == ROUTER_APP_NAME:
            apps.append(app)
            continue
        engine = app.deployments[0]
        assert engine.autoscaling_config is not None
        policy = engine.autoscaling_config.policy.model_copy(update={"policy_function": policy_function})
        autoscaling = engine.autoscaling_config.model_copy(update={"policy": policy})
        apps.append(
            app.model_copy(update={"deployments": (engine.model_copy(update={"autoscaling_config": autoscaling}),)})
        )
    return config.model_copy(update={"applications": tuple(apps)})


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    rate: float
    """Mean arrivals per second."""


def build_phases(capacity: float) -> list[Phase]:
    """Calm, moderate (half of one replica's capacity), burst (1.1x of it), calm."""
    return [
        Phase("calm", 10, CALM_RATE),
        Phase("moderate", 40, 0.5 * capacity),
        Phase("burst", 45, 1.1 * capacity),
        Phase("cooldown", 45, CALM_RATE),
    ]


def build_trace(phases: list[Phase], seed: int) -> list[float]:
    """Poisson arrival offsets (seconds from the trace start), phase after phase."""
    rng = random.Random(seed)
    arrivals: list[float] = []
    start = 0.0
    for phase in phases:
        t = start + rng.expovariate(phase.rate)
        while t < start + phase.seconds:
            arrivals.append(t)
            t += rng.expovariate(phase.rate)
        start += phase.seconds
    return arrivals


def phase_start(phases: list[Phase], name: str) -> float:
    offset = 0.0
    for phase in phases:
        if phase.name == name:
            return offset
        offset += phase.seconds
    raise KeyError(name)


@dataclass(frozen=True)
class Outcome:
    latency_s: float
    ok: bool
    done_s: float
    """When it was answered (or failed), from the trace start."""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]


def integrate(samples: list[tuple[float, int]], start: float, end: float) -> float:
    """Step-function integral of (time, replicas) samples over [start, end]."""
    total = 0.0
    for (t0, count), (t1, _) in zip(samples, [*samples[1:], (end, 0)], strict=True):
        lo, hi = max(t0, start), min(t1, end)
        if hi > lo:
            total += count * (hi - lo)
    return total


# ---------------------------------------------------------------- I/O: load and replica polling


@dataclass
class ReplicaLog:
    """RUNNING engine replicas over time, and when each replica's actor started (from Serve)."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    actor_started: dict[str, float] = field(default_factory=dict)
    running_since: dict[str, float] = field(default_factory=dict)


def record_replicas(local: LocalServe, app: str, replicas: ReplicaLog) -> None:
    """One look at the engine deployment's replicas, added to `replicas`."""
    try:
        deployment = local.details()["applications"][app]["deployments"][ENGINE_DEPLOYMENT_NAME]
    except (httpx.HTTPError, KeyError) as error:
        log(f"replica poll failed: {error!r}")
        return
    now = time.time()
    running = [r for r in deployment["replicas"] if r["state"] == "RUNNING"]
    for replica in deployment["replicas"]:
        replicas.actor_started.setdefault(replica["replica_id"], float(replica["start_time_s"]))
    for replica in running:
        replicas.running_since.setdefault(replica["replica_id"], now)
    if not replicas.samples or replicas.samples[-1][1] != len(running):
        log(f"engine replicas RUNNING: {len(running)} (target {deployment['target_num_replicas']})")
    replicas.samples.append((now, len(running)))


def poll_replicas(local: LocalServe, app: str, replicas: ReplicaLog, stop: threading.Event) -> None:
    while not stop.is_set():
        record_replicas(local, app, replicas)
        stop.wait(POLL_S)


def request_body(rng: random.Random) -> dict[str, Any]:
    country = rng.choice(("France", "Japan", "Peru", "Norway", "Germany", "Italy"))
    return {
        "model": MODEL,
        "prompt": f"What is the capital of {country}?",
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,
        "temperature": 0,
    }


async def replay(url: str, trace: list[float], seed: int) -> tuple[float, list[Outcome]]:
    """Send each request at its arrival offset; return (wall start, outcomes in arrival order)."""
    rng = random.Random(seed)
    bodies = [request_body(rng) for _ in trace]
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        started_wall = time.time()
        started = time.monotonic()

        async def one(offset: float, body: dict[str, Any]) -> Outcome:
            await asyncio.sleep(max(0.0, started + offset - time.monotonic()))
            try:
                response = await client.post("/v1/completions", json=body)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            done = time.monotonic() - started
            return Outcome(done - offset, ok, done)

        outcomes = await asyncio.gather(*(one(t, b) for t, b in zip(trace, bodies, strict=True)))
    return started_wall, list(outcomes)


def measure_capacity(url: str, concurrency: int, seconds: float) -> float:
    """Answers per second of one replica under closed-loop load at its batch size."""

    async def run() -> int:
        done = 0
        deadline = time.monotonic() + seconds
        rng = random.Random(0)
        async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:

            async def worker() -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    response = await client.post("/v1/completions", json=request_body(rng))
                    response.raise_for_status()
                    done += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done

    started = time.monotonic()
    answered = asyncio.run(run())
    return answered / (time.monotonic() - started)


def wait_replicas(local: LocalServe, app: str, count: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        deployment = local.details()["applications"][app]["deployments"][ENGINE_DEPLOYMENT_NAME]
        if (
            sum(r["state"] == "RUNNING" for r in deployment["replicas"]) == count
            and len(deployment["replicas"]) == count
        ):
            return
        time.sleep(POLL_S)
    raise TimeoutError(f"{app} never settled at {count} replica(s)")


@dataclass(frozen=True)
class RunResult:
    slo_attainment: float
    p95_ms: float
    replica_seconds: float
    reaction_s: float | None
    """Burst start → a replica started during the burst is RUNNING."""
    decision_s: float | None
    """Burst start → Serve started that replica's actor."""
    first_scale_up_s: float | None
    """Trace start → a second replica first RUNNING (the default policy may scale before the burst)."""
    failed: int
    requests: int


def run_policy(
    label: str, policy_function: str, args: argparse.Namespace, capacity: float | None
) -> tuple[RunResult, float]:
    """One policy on a fresh private Ray; measures capacity first when none is given."""
    config = build_config(policy_function)
    app = config.applications[1].name
    with LocalServe() as local:
        log(f"{label}: deploying ({policy_function})")
        local.apply(config)
        # The router's first requests through a new handle queue there while it discovers the
        # replica: a trickle first, identical in both runs, keeps that out of what either policy sees.
        measure_capacity(local.url, 1, WARMUP_S)
        if capacity is None:
            capacity = measure_capacity(local.url, MAX_NUM_SEQS, WARMUP_S)
            log(f"{label}: one replica answers {capacity:.1f} req/s at concurrency {MAX_NUM_SEQS}")
        wait_replicas(local, app, 1)
        phases = build_phases(capacity)
        trace = build_trace(phases, args.seed)
        log(f"{label}: trace of {len(trace)} requests over {sum(p.seconds for p in phases):.0f} s: {phases}")
        replicas = ReplicaLog()
        record_replicas(local, app, replicas)  # the replica serving before the trace is not a scale-up
        stop = threading.Event()
        poller = threading.Thread(target=poll_replicas, args=(local, app, replicas, stop), daemon=True)
        poller.start()
        try:
            started, outcomes = asyncio.run(replay(local.url, trace, args.seed))
        finally:
            stop.set()
            poller.join()
    burst = started + phase_start(phases, "burst")
    window = max(sum(p.seconds for p in phases), *(o.done_s for o in outcomes))
    new_running = sorted(t for t in replicas.running_since.values() if t > started)
    second_running = [t for t in new_running if t >= burst]
    second_actor = sorted(t for t in replicas.actor_started.values() if t >= burst)
    ok_latencies = [o.latency_s for o in outcomes if o.ok]
    result = RunResult(
        slo_attainment=sum(o.ok and o.latency_s <= args.slo_s for o in outcomes) / len(outcomes),
        p95_ms=percentile(ok_latencies, 95) * 1000,
        replica_seconds=integrate(replicas.samples, started, started + window),
        reaction_s=second_running[0] - burst if second_running else None,
        decision_s=second_actor[0] - burst if second_actor else None,
        first_scale_up_s=new_running[0] - started if new_running else None,
        failed=sum(not o.ok for o in outcomes),
        requests=len(outcomes),
    )
    log(f"{label}: {result}")
    return result, capacity


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slo-s", type=float, default=2.0, help="latency SLO per request (seconds)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the arrival trace")
    args = parser.parse_args()
    queue, capacity = run_policy("queue-depth", QUEUE_DEPTH_POLICY, args, None)
    default, _ = run_policy("default", DEFAULT_POLICY, args, capacity)
    figures = {
        "queue_slo_attainment": rounded(queue.slo_attainment),
        "default_slo_attainment": rounded(default.slo_attainment),
        "queue_p95_ms": rounded(queue.p95_ms, 1),
        "default_p95_ms": rounded(default.p95_ms, 1),
        "queue_replica_seconds": rounded(queue.replica_seconds, 1),
        "default_replica_seconds": rounded(default.replica_seconds, 1),
        "reaction_s": rounded(queue.reaction_s, 1),
        "failed_requests": queue.failed + default.failed,
        "default_reaction_s": rounded(default.reaction_s, 1),
        "queue_decision_s": rounded(queue.decision_s, 1),
        "default_decision_s": rounded(default.decision_s, 1),
        "queue_first_scale_up_s": rounded(queue.first_scale_up_s, 1),
        "default_first_scale_up_s": rounded(default.first_scale_up_s, 1),
        "burst_starts_at_s": phase_start(build_phases(capacity), "burst"),
        "slo_s": args.slo_s,
        "capacity_rps": rounded(capacity, 1),
        "requests_per_run": queue.requests,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
