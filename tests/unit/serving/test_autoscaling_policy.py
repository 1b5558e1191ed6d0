"""The queue-depth autoscaling policy: the pure decision (table) and its Serve shell.

The shell is exercised with Ray Serve 2.60's real `AutoscalingContext`, `AutoscalingConfig` and
its real wrapper for custom policies (`_apply_autoscaling_config`, which adds delays), built by hand:
no Ray cluster or vLLM runs here (the end-to-end scaling test lives in tests/integration/serving).
"""

from __future__ import annotations

from typing import Any

import pytest

from slm_serving.autoscaling import (
    CAPACITY_STATE_KEY,
    ReplicaDecision,
    ReplicaLoad,
    decide_replicas,
    queue_depth_policy,
)
from slm_serving.config import QUEUE_DEPTH_POLICY
from slm_serving.protocol import RUNNING_METRIC, WAITING_METRIC

L = ReplicaLoad


@pytest.mark.parametrize(
    ("loads", "target_replicas", "queued", "capacity", "expected"),
    [
        pytest.param([], 3, 0.0, None, ReplicaDecision(3, None), id="no-metrics-yet-holds-target"),
        pytest.param([], 2, 0.0, 8.0, ReplicaDecision(2, 8.0), id="no-metrics-keeps-capacity"),
        pytest.param([L(0, 0)], 1, 0.0, None, ReplicaDecision(0, None), id="idle-asks-zero"),
        pytest.param([L(0, 0), L(0, 0)], 2, 0.0, 8.0, ReplicaDecision(0, 8.0), id="idle-two-asks-zero"),
        pytest.param([L(0, 0)], 0, 3.0, None, ReplicaDecision(1, None), id="handle-queue-alone-needs-one"),
        pytest.param([L(20, 8)], 1, 0.0, None, ReplicaDecision(3, 8.0), id="queue-above-target-scales-up"),
        pytest.param([L(4, 8)], 1, 0.0, None, ReplicaDecision(1, 8.0), id="queue-at-target-holds"),
        pytest.param([L(5, 8)], 1, 0.0, None, ReplicaDecision(2, 8.0), id="queue-just-above-target"),
        pytest.param([L(2, 8), L(2, 8)], 2, 0.0, None, ReplicaDecision(2, 8.0), id="below-target-no-flap"),
        pytest.param([L(0, 2)] * 4, 4, 0.0, 8.0, ReplicaDecision(1, 8.0), id="running-fits-one-scales-down"),
        pytest.param([L(0, 6)] * 4, 4, 0.0, 8.0, ReplicaDecision(3, 8.0), id="scale-down-keeps-headroom"),
        pytest.param([L(0, 5)] * 4, 4, 0.0, 8.0, ReplicaDecision(2, 8.0), id="scale-down-to-80-percent-full"),
        pytest.param([L(0, 6)] * 2, 2, 0.0, 8.0, ReplicaDecision(2, 8.0), id="packed-would-be-too-full-holds"),
        pytest.param([L(0, 6)] * 2, 1, 0.0, 8.0, ReplicaDecision(1, 8.0), id="headroom-never-scales-up"),
        pytest.param([L(0, 3), L(0, 1)], 2, 0.0, None, ReplicaDecision(1, 3.0), id="unsaturated-lower-bound"),
        pytest.param([L(0, 10)], 1, 0.0, 8.0, ReplicaDecision(1, 10.0), id="running-beyond-memory-raises-it"),
        pytest.param([L(6, 4)], 1, 0.0, 16.0, ReplicaDecision(2, 4.0), id="saturation-replaces-memory"),
        pytest.param([L(0, 8)], 1, 16.0, 8.0, ReplicaDecision(2, 8.0), id="handle-queue-counts-as-waiting"),
        pytest.param([L(3, 0)], 1, 0.0, None, ReplicaDecision(1, None), id="stuck-engine-queue-only"),
        pytest.param([L(9, 0)], 1, 0.0, None, ReplicaDecision(3, None), id="stuck-engine-scales-on-queue"),
    ],
)
def test_decide_replicas(
    loads: list[ReplicaLoad], target_replicas: int, queued: float, capacity: float | None, expected: ReplicaDecision
) -> None:
    decision = decide_replicas(
        loads, target_replicas=target_replicas, handle_queued=queued, target_queue_depth=4.0, capacity=capacity
    )
    assert decision == expected


@pytest.mark.parametrize("target", [0.5, 1.0, 4.0, 32.0])
@pytest.mark.parametrize("replicas", [1, 2, 5])
def test_queue_at_exactly_target_is_a_fixed_point(target: float, replicas: int) -> None:
    """Every replica full (8 running) with exactly `target` waiting: the count neither grows nor shrinks."""
    loads = [ReplicaLoad(waiting=target, running=8)] * replicas
    decision = decide_replicas(
        loads, target_replicas=replicas, handle_queued=0, target_queue_depth=target, capacity=None
    )
    assert decision.replicas == replicas


def test_more_queue_never_means_fewer_replicas() -> None:
    previous = 0
    for waiting in range(0, 200, 7):
        decision = decide_replicas(
            [ReplicaLoad(waiting=waiting, running=8)] * 2,
            target_replicas=2,
            handle_queued=0,
            target_queue_depth=4,
            capacity=8,
        )
        assert decision.replicas >= previous
        previous = decision.replicas


# ---------------------------------------------------------------- the Serve shell, with Serve's own types

serve_config = pytest.importorskip("ray.serve.config")
serve_common = pytest.importorskip("ray.serve._private.common")


def _context(
    waiting: dict[str, float],
    running: dict[str, float],
    *,
    current: int,
    target: int,
    queued: float = 0.0,
    state: dict[str, Any] | None = None,
    now: float = 1000.0,
    upscale_delay_s: float = 0.0,
    downscale_delay_s: float = 0.0,
) -> Any:
    deployment = serve_common.DeploymentID(name="LLMEngine", app_name="rev-abc")
    replicas = {name: serve_common.ReplicaID(unique_id=name, deployment_id=deployment) for name in waiting}
    config = serve_config.AutoscalingConfig(
        min_replicas=0,
        max_replicas=10,
        target_ongoing_requests=4,
        upscale_delay_s=upscale_delay_s,
        downscale_delay_s=downscale_delay_s,
        policy={"policy_function": QUEUE_DEPTH_POLICY},
    )
    return serve_config.AutoscalingContext(
        deployment_id=deployment,
        deployment_name="LLMEngine",
        app_name="rev-abc",
        current_num_replicas=current,
        target_num_replicas=target,
        running_replicas=list(replicas.values()),
        total_num_requests=sum(waiting.values()) + sum(running.values()),
        total_queued_requests=queued,
        aggregated_metrics=lambda: {
            WAITING_METRIC: {replicas[n]: v for n, v in waiting.items()},
            RUNNING_METRIC: {replicas[n]: v for n, v in running.items()},
        },
        raw_metrics=None,
        capacity_adjusted_min_replicas=0,
        capacity_adjusted_max_replicas=10,
        policy_state=state or {},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=now,
        config=config,
    )


def test_config_names_this_policy() -> None:
    """Serve resolves the import path the operator writes (it hands back a cloudpickled copy)."""
    config = serve_config.AutoscalingConfig(
        min_replicas=1, max_replicas=2, policy={"policy_function": QUEUE_DEPTH_POLICY}
    )
    resolved = config.policy.get_policy()
    assert (resolved.__module__, resolved.__qualname__) == ("slm_serving.autoscaling", "queue_depth_policy")
    assert resolved(_context({"a": 20.0}, {"a": 8.0}, current=1, target=1)) == (3, {CAPACITY_STATE_KEY: 8.0})


def test_shell_reads_custom_metrics_and_remembers_capacity() -> None:
    ctx = _context({"a": 20.0}, {"a": 8.0}, current=1, target=1)
    assert queue_depth_policy(ctx) == (3, {CAPACITY_STATE_KEY: 8.0})


def test_shell_uses_remembered_capacity_to_scale_down() -> None:
    ctx = _context(
        {"a": 0, "b": 0, "c": 0}, {"a": 2, "b": 2, "c": 2}, current=3, target=3, state={CAPACITY_STATE_KEY: 8.0}
    )
    assert queue_depth_policy(ctx) == (1, {CAPACITY_STATE_KEY: 8.0})


def test_shell_holds_while_no_replica_reported() -> None:
    ctx = _context({}, {}, current=0, target=1)
    assert queue_depth_policy(ctx) == (1, {})


def test_shell_counts_requests_queued_at_handles() -> None:
    ctx = _context({"a": 0.0}, {"a": 8.0}, current=1, target=1, queued=16.0, state={CAPACITY_STATE_KEY: 8.0})
    assert queue_depth_policy(ctx)[0] == 2


def test_serve_wrapper_applies_the_upscale_delay_not_the_policy() -> None:
    """Serve's wrapper (what the controller runs) delays our raw decision: first wish at t=1000 holds
    at 1 replica, the same wish 10 s later (delay 10 s) gets 3 — so the policy must not delay too."""
    from ray.serve.autoscaling_policy import _apply_autoscaling_config

    wrapped = _apply_autoscaling_config(queue_depth_policy)
    first, state = wrapped(_context({"a": 20.0}, {"a": 8.0}, current=1, target=1, upscale_delay_s=10, now=1000))
    assert first == 1
    # Serve's delay logic reads time.time(); the recorded decision timestamp is moved 10 s back instead.
    timestamps = [k for k, v in state.items() if isinstance(v, float) and k != CAPACITY_STATE_KEY]
    assert timestamps, state
    state = {k: (v - 10 if k in timestamps else v) for k, v in state.items()}
    later, _ = wrapped(_context({"a": 20.0}, {"a": 8.0}, current=1, target=1, upscale_delay_s=10, state=state))
    assert later == 3
