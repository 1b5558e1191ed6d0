"""Queue-depth autoscaling of a revision's vLLM deployment: a Ray Serve 2.60 custom policy.

`queue_depth_policy` is what `autoscaling_config.policy.policy_function` names; it only adapts Serve's
`AutoscalingContext` to the pure `decide_replicas`. Serve wraps every custom policy
(`ray/serve/autoscaling_policy.py: _apply_autoscaling_config`) and itself applies the upscaling and
downscaling factors, `upscale_delay_s` / `downscale_delay_s` / `downscale_to_zero_delay_s` (timestamps
it keeps in the policy state), the cold-start fast path (no replica and requests queued → one
replica at once, without calling the policy), and then `min_replicas` / `max_replicas`. So the policy
says only how many replicas the load needs now: doing delays or bounds here as well would apply them
twice. Scale to zero follows: an idle deployment asks for 0 and Serve goes there only if min is 0.

Importable without Ray (the context type is only used for annotations).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from slm_serving.protocol import RUNNING_METRIC, WAITING_METRIC

if TYPE_CHECKING:
    from ray.serve.config import AutoscalingContext

CAPACITY_STATE_KEY: Final = "slm_running_capacity"
"""Policy-state key remembering how many requests one replica runs at once when saturated."""
_TOLERANCE: Final = 1e-9
DOWNSCALE_UTILIZATION: Final = 0.8
"""Share of the learned batch capacity a scale-down may fill: a replica's time per token grows with
its batch, so the running count measured on more replicas understates what fewer would run. Tuned in
the fleet simulator (docs/autoscaling.md): at 1.0 the fleet flapped between packed and idle replicas."""


@dataclass(frozen=True)
class ReplicaLoad:
    """One replica's engine, averaged over Serve's look-back window."""

    waiting: float
    """Requests queued inside vLLM for a place in the running batch."""
    running: float
    """Requests vLLM is generating for."""


@dataclass(frozen=True)
class ReplicaDecision:
    replicas: int
    """Replicas the load needs now, before Serve's delays and bounds."""
    capacity: float | None
    """Requests one replica runs at once, as learned so far (kept in the policy state)."""


def decide_replicas(
    loads: Sequence[ReplicaLoad],
    *,
    target_replicas: int,
    handle_queued: float,
    target_queue_depth: float,
    capacity: float | None,
) -> ReplicaDecision:
    """Replicas needed so that each runs a full batch with at most `target_queue_depth` waiting.

    A replica's batch capacity C is learned from replicas that queue (their running count is what
    they can hold); until one queues, the largest running count seen is a lower bound. The load is
    every running and waiting request, plus those queued at Serve handles (the router) before
    reaching an engine; it needs ceil(load / (C + target)) replicas. So waiting above target per
    replica scales up, and the running load alone decides how far down to go (no flapping between
    "queue empty → scale down" and "queue full → scale up"). Fewer than `target_replicas` only to a
    count that runs the load at `DOWNSCALE_UTILIZATION` of C: packed full, the smaller batch of
    fewer replicas would saturate them, and scale back up a start-up time later. No load at all → 0.

    `loads` holds the replicas that reported metrics; none reported yet → keep `target_replicas`.
    """
    if not loads:
        return ReplicaDecision(replicas=target_replicas, capacity=capacity)
    saturated = [load.running for load in loads if load.waiting > 0]
    most_running = max(load.running for load in loads)
    learned = max(saturated) if saturated else max(capacity or 0.0, most_running)
    total = sum(load.waiting + load.running for load in loads) + max(0.0, handle_queued)
    if total <= 0:
        return ReplicaDecision(replicas=0, capacity=learned or capacity)
    replicas = math.ceil(total / (learned + target_queue_depth) - _TOLERANCE)
    if replicas < target_replicas:
        roomy = math.ceil(total / (DOWNSCALE_UTILIZATION * learned + target_queue_depth) - _TOLERANCE)
        replicas = min(target_replicas, roomy)
    return ReplicaDecision(replicas=max(1, replicas), capacity=learned or capacity)


def queue_depth_policy(ctx: AutoscalingContext) -> tuple[int, dict[str, Any]]:
    """Serve's entry point: vLLM queue depth (`record_autoscaling_stats`) → replicas, policy state."""
    if ctx.config is None:  # Serve always passes it; without a target there is nothing to decide
        return ctx.target_num_replicas, dict(ctx.policy_state)
    metrics = ctx.aggregated_metrics or {}
    waiting = metrics.get(WAITING_METRIC, {})
    running = metrics.get(RUNNING_METRIC, {})
    loads = [
        ReplicaLoad(waiting=float(waiting[replica]), running=float(running.get(replica, 0.0)))
        for replica in ctx.running_replicas
        if replica in waiting
    ]
    remembered = ctx.policy_state.get(CAPACITY_STATE_KEY)
    decision = decide_replicas(
        loads,
        target_replicas=ctx.target_num_replicas,
        handle_queued=float(ctx.total_queued_requests or 0.0),
        target_queue_depth=float(ctx.config.target_ongoing_requests),
        capacity=float(remembered) if remembered is not None else None,
    )
    state = {} if decision.capacity is None else {CAPACITY_STATE_KEY: decision.capacity}
    return decision.replicas, state
