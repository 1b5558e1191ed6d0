"""Ray Serve 2.60's autoscaling controller, as a stand-in the simulator can run on its own clock.

Transcribed from ray 2.60.0 `python/ray/serve/autoscaling_policy.py` (`_apply_autoscaling_config`,
`_apply_default_params`, `_apply_scaling_factors`, `_apply_delay_logic`,
`_get_cold_start_scale_up_replicas`, `replica_queue_length_autoscaling_policy`) and
`_private/autoscaling_state.py` (`get_decision_num_replicas`, `apply_bounds`). Serve itself reads
`time.time()` inside the wrapper, so its functions cannot run on simulated time; these do, and
tests/unit/sim/test_serve_rules.py checks them against Ray's own functions where Ray is installed.
The metrics Serve hands a policy (averaged over `look_back_period_s`, pushed every
`metrics_interval_s`) are built by the fleet.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DELAY_EPS_S = 1e-6
"""Serve's `_DELAY_ELAPSED_EPS_S`."""


@dataclass(frozen=True)
class ServeAutoscaling:
    """The fields of Serve's `AutoscalingConfig` the controller uses, with Serve 2.60's defaults."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    downscale_to_zero_delay_s: float | None = None
    upscaling_factor: float | None = None
    downscaling_factor: float | None = None
    smoothing_factor: float = 1.0
    metrics_interval_s: float = 10.0
    look_back_period_s: float = 30.0

    def get_upscaling_factor(self) -> float:
        return self.upscaling_factor or self.smoothing_factor

    def get_downscaling_factor(self) -> float:
        return self.downscaling_factor or self.smoothing_factor

    def get_target_ongoing_requests(self) -> float:
        return self.target_ongoing_requests


@dataclass(slots=True)
class SimContext:
    """What a policy reads of Serve's `AutoscalingContext` (same attribute names), built per decision."""

    config: ServeAutoscaling
    current_num_replicas: int
    target_num_replicas: int
    running_replicas: list[int]
    total_num_requests: float
    total_queued_requests: float
    aggregated_metrics: Mapping[str, Mapping[int, float]]
    policy_state: dict[str, Any]
    current_time: float


Policy = Callable[[Any], tuple[float, dict[str, Any]]]


@dataclass
class ControllerState:
    """Serve's per-deployment autoscaling state: the delay bookkeeping and the policy's own state."""

    decision_counter: int = 0
    decision_since: float | None = None
    policy_state: dict[str, Any] = field(default_factory=dict)


def cold_start_replicas(ctx: SimContext) -> int | None:
    if ctx.current_num_replicas == 0 and ctx.total_num_requests > 0:
        return max(math.ceil(1 * ctx.config.get_upscaling_factor()), ctx.target_num_replicas)
    return None


def apply_scaling_factors(desired: float, current: int, config: ServeAutoscaling) -> int:
    if current == 0:
        return math.ceil(desired)
    delta = desired - current
    factor = config.get_upscaling_factor() if delta > 0 else config.get_downscaling_factor()
    scaled = math.ceil(current + factor * delta)
    if math.ceil(float(desired)) < current and scaled == current:
        scaled -= 1
    return scaled


def apply_delay(desired: int, target: int, config: ServeAutoscaling, state: ControllerState, now: float) -> int:
    """`_apply_delay_logic`: a change only after it was wanted for the whole delay; updates `state`."""
    decision = target
    if desired > target:
        if state.decision_counter < 0:
            state.decision_counter, state.decision_since = 0, None
        state.decision_counter += 1
        if state.decision_since is None:
            state.decision_since = now
        if now - state.decision_since + DELAY_EPS_S >= config.upscale_delay_s:
            state.decision_counter, state.decision_since = 0, None
            decision = desired
    elif desired < target:
        if state.decision_counter > 0:
            state.decision_counter, state.decision_since = 0, None
        state.decision_counter -= 1
        if target == 1:
            delay = (
                config.downscale_to_zero_delay_s
                if config.downscale_to_zero_delay_s is not None
                else config.downscale_delay_s
            )
        else:
            delay = config.downscale_delay_s
            desired = max(1, desired)
        if state.decision_since is None:
            state.decision_since = now
        if now - state.decision_since + DELAY_EPS_S >= delay:
            state.decision_counter, state.decision_since = 0, None
            decision = desired
    else:
        state.decision_counter, state.decision_since = 0, None
    return decision


def decide_target(policy: Policy, ctx: SimContext, state: ControllerState) -> int:
    """One controller decision: the wrapped policy, then `min_replicas`/`max_replicas`. Updates `state`."""
    config = ctx.config
    cold = cold_start_replicas(ctx)
    if cold is not None:
        decision = cold
    else:
        desired, user_state = policy(ctx)
        scaled = apply_scaling_factors(desired, ctx.current_num_replicas, config)
        if ctx.current_num_replicas == 0 and scaled > 0:
            decision = scaled
        else:
            decision = apply_delay(max(0, scaled), ctx.target_num_replicas, config, state, ctx.current_time)
        state.policy_state = dict(user_state)
    return max(config.min_replicas, min(config.max_replicas, math.ceil(decision)))


def default_policy(ctx: SimContext) -> tuple[float, dict[str, Any]]:
    """`replica_queue_length_autoscaling_policy`: ongoing requests / target per replica."""
    cold = cold_start_replicas(ctx)
    if cold is not None:
        return cold, ctx.policy_state
    running = ctx.current_num_replicas
    if running == 0:
        return ctx.target_num_replicas, {}
    target_requests = ctx.config.get_target_ongoing_requests() * running
    return running * (ctx.total_num_requests / target_requests), {}
