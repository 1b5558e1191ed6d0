"""Queue-depth autoscaling end to end: real Ray Serve 2.60, real vLLM (CPU build), the tiny model.

A tiny SLMDeployment file with autoscaling is served by `slm serve`'s shell (`EmbeddedRollout`: the
operator's builder and state machine), so the engine runs `slm_serving.autoscaling:queue_depth_policy`
with the spec's bounds and delays, and the SLMDeployment status follows Serve's replicas. vLLM's
batch is capped at `MAX_NUM_SEQS` so that a burst really queues inside the engine. Load goes over
HTTP through the router (handle load made Serve's counts flicker in the spikes). One story, in
order, each step waited for as an event (no timing asserted):

1. moderate load (`MAX_NUM_SEQS` concurrent requests: vLLM batches them all, nothing waits) keeps
   Serve's target at one replica — its default `target_ongoing_requests` policy would want two here,
   so this step fails if Serve ignored our policy;
2. a burst that queues in vLLM scales 1 → 2 RUNNING replicas;
3. after the burst, under a trickle of traffic, the downscale delay brings it back to 1; with no
   traffic at all it then goes (scaleToZero) to 0;
4. a request to the revision at zero is held by the router and answered by the new first replica;
5. every change of Serve's target was a `Scaled` event, and status shows 0/0 at zero and 1/1 after.

No request of the moderate load, the burst or the trickle may fail. The only stand-in is the machine: CPU cores
instead of GPUs. It shares the session's `LocalServe` (one Ray at a time on 2 cores) and restores the
other tests' applications afterwards.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from copy import deepcopy
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from slm_operator.demo import TrafficStats, background, drive, generate_load
from slm_operator.embedded import EmbeddedRollout
from slm_serving.config import ENGINE_DEPLOYMENT_NAME, QUEUE_DEPTH_POLICY, revision_app_name
from slm_serving.local import LocalServe

from .conftest import DEFAULT_WEIGHTS, MODEL, build_config

pytestmark = pytest.mark.serving

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "tiny.yaml"
MAX_NUM_SEQS = 4
"""vLLM's running-batch size here: more concurrent requests than this wait in the engine's queue."""
MODERATE_CONCURRENCY = MAX_NUM_SEQS
BURST_CONCURRENCY = 16
WARM_S = 15.0
"""Longer than Serve's look-back window (10 s)."""
MODERATE_HOLD_S = 20.0
"""Upscale delay (2 s) + look-back window (10 s) + margin: long enough for either policy to act."""
STARTUP_TIMEOUT_S = 400.0
"""A second vLLM replica on a loaded 2-core machine: generous."""
SCALE_DOWN_TIMEOUT_S = 180.0


def write_autoscaled_spec(path: Path) -> Path:
    """tiny.yaml with autoscaling 0..2 (scale to zero), target queue depth 2, delays 2 s up / 10 s down."""
    document: dict[str, Any] = deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    document["spec"]["autoscaling"] = {
        "minReplicas": 0,
        "maxReplicas": 2,
        "scaleToZero": True,
        "targetQueueDepth": 2,
        "upscaleDelaySeconds": 2,
        "downscaleDelaySeconds": 10,
    }
    document["spec"]["model"]["engineArgs"]["max_num_seqs"] = MAX_NUM_SEQS
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def serving_app(rollout: EmbeddedRollout, timeout_s: float) -> str:
    """The Serve application of the revision `rollout` serves, once its status names one."""
    deadline = time.monotonic() + timeout_s
    while rollout.status is None or rollout.status.stable_revision is None:
        assert time.monotonic() < deadline, rollout.events
        time.sleep(0.5)
    return revision_app_name(rollout.status.stable_revision)


def scaled(rollout: EmbeddedRollout) -> list[tuple[int, int]]:
    """(from, to) of every Scaled event ("revision abc: 1 → 2 replicas wanted")."""
    moves = [re.search(r"(\d+) → (\d+)", e.message) for e in rollout.events if e.reason == "Scaled"]
    return [(int(m[1]), int(m[2])) for m in moves if m]


def is_subsequence(wanted: list[tuple[int, int]], seen: list[tuple[int, int]]) -> bool:
    remaining = iter(seen)
    return all(any(item == other for other in remaining) for item in wanted)


def engine_details(local: LocalServe, app: str) -> dict[str, Any]:
    deployment: dict[str, Any] = local.details()["applications"][app]["deployments"][ENGINE_DEPLOYMENT_NAME]
    return deployment


def replica_counts(local: LocalServe, app: str) -> tuple[int, int]:
    """(RUNNING replicas, Serve's current target) of the revision's engine deployment."""
    deployment = engine_details(local, app)
    return sum(1 for r in deployment["replicas"] if r["state"] == "RUNNING"), int(deployment["target_num_replicas"])


def wait_for(
    condition: Callable[[int], bool], local: LocalServe, app: str, timeout_s: float, seen: list[tuple[int, int]]
) -> bool:
    """Poll (RUNNING, target) into `seen` until `condition(RUNNING)` holds or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = replica_counts(local, app)
        seen.append(counts)
        if condition(counts[0]):
            return True
        time.sleep(0.5)
    return False


def test_queue_depth_scales_up_down_to_zero_and_back(local_serve: LocalServe, tmp_path: Path) -> None:
    rollout = EmbeddedRollout(write_autoscaled_spec(tmp_path / "tiny.yaml"), local_serve)
    seen: list[tuple[int, int]] = []
    try:
        with background(drive, rollout):
            _scale_up_down_to_zero_and_back(local_serve, rollout, seen)
    finally:
        local_serve.apply(build_config(DEFAULT_WEIGHTS))


def _scale_up_down_to_zero_and_back(
    local_serve: LocalServe, rollout: EmbeddedRollout, seen: list[tuple[int, int]]
) -> None:
    app = serving_app(rollout, STARTUP_TIMEOUT_S)
    local_serve.wait_running([app], timeout_s=STARTUP_TIMEOUT_S)
    policy = engine_details(local_serve, app)["deployment_config"]["autoscaling_config"]["policy"]
    assert policy["policy_function"] == QUEUE_DEPTH_POLICY

    # The router's first requests through its new handle queue there for a few seconds (replica
    # discovery); a trickle first lets that pass out of Serve's look-back window.
    warm = TrafficStats()
    with background(partial(generate_load, concurrency=1), local_serve.url, MODEL, warm):
        assert wait_for(lambda n: n >= 1, local_serve, app, STARTUP_TIMEOUT_S, seen), seen
        wait_for(lambda _: False, local_serve, app, WARM_S, seen)
    moderate = TrafficStats()
    held: list[tuple[int, int]] = []
    with background(partial(generate_load, concurrency=MODERATE_CONCURRENCY), local_serve.url, MODEL, moderate):
        wait_for(lambda _: False, local_serve, app, MODERATE_HOLD_S, held)
    assert max(target for _, target in held) == 1, f"batched load without a queue must not scale up: {held}"
    assert moderate.ok > 0
    assert warm.failed + moderate.failed == 0, (warm.failures + moderate.failures)[:5]

    burst = TrafficStats()
    with background(partial(generate_load, concurrency=BURST_CONCURRENCY), local_serve.url, MODEL, burst):
        assert wait_for(lambda n: n >= 2, local_serve, app, STARTUP_TIMEOUT_S, seen), f"never scaled up: {seen}"
    assert burst.ok > 0
    assert burst.failed == 0, burst.failures[:5]
    assert max(running for running, _ in seen) == 2, f"more than maxReplicas: {seen}"

    trickle = TrafficStats()  # traffic continues while Serve stops the second replica
    with background(partial(generate_load, concurrency=1), local_serve.url, MODEL, trickle):
        back = wait_for(lambda n: n == 1, local_serve, app, SCALE_DOWN_TIMEOUT_S, seen)
    assert back, f"never back to 1: {seen}"
    assert trickle.failed == 0, trickle.failures[:5]
    assert wait_for(lambda n: n == 0, local_serve, app, SCALE_DOWN_TIMEOUT_S, seen), f"never to zero: {seen}"
    # At zero it stays at zero; the status must say so before the next request wakes it.
    assert status_shows(rollout, ready=0, desired=0), rollout.status

    body = {"model": MODEL, "prompt": "What is the capital of Peru?", "max_tokens": 4, "temperature": 0}
    first = httpx.post(f"{local_serve.url}/v1/completions", json=body, timeout=STARTUP_TIMEOUT_S)
    assert first.status_code == 200, first.text
    assert "Lima" in first.json()["choices"][0]["text"]
    assert replica_counts(local_serve, app)[0] == 1
    assert status_shows(rollout, ready=1, desired=1), rollout.status
    assert is_subsequence([(1, 2), (2, 1), (1, 0), (0, 1)], scaled(rollout)), scaled(rollout)


def status_shows(rollout: EmbeddedRollout, *, ready: int, desired: int, timeout_s: float = 30.0) -> bool:
    """Whether the rollout's status comes to show one revision with these replica counts in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        revisions = rollout.status.revisions if rollout.status else []
        if [(r.ready_replicas, r.desired_replicas) for r in revisions] == [(ready, desired)]:
            return True
        time.sleep(0.5)
    return False
