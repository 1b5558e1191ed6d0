"""The Serve 2.60 controller stand-in against Ray Serve's own functions (skipped where Ray is absent)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slm_operator.sim.serve_rules import (
    ControllerState,
    ServeAutoscaling,
    SimContext,
    apply_delay,
    apply_scaling_factors,
    decide_target,
    default_policy,
)

policy_module = pytest.importorskip("ray.serve.autoscaling_policy")
ray_config = pytest.importorskip("ray.serve.config")


def ray_config_of(config: ServeAutoscaling) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ray_config.AutoscalingConfig(
            min_replicas=config.min_replicas,
            max_replicas=config.max_replicas,
            target_ongoing_requests=config.target_ongoing_requests,
            upscale_delay_s=config.upscale_delay_s,
            downscale_delay_s=config.downscale_delay_s,
            downscale_to_zero_delay_s=config.downscale_to_zero_delay_s,
            upscaling_factor=config.upscaling_factor,
            downscaling_factor=config.downscaling_factor,
        )


configs = st.builds(
    ServeAutoscaling,
    min_replicas=st.integers(0, 2),
    max_replicas=st.integers(3, 8),
    target_ongoing_requests=st.floats(0.5, 16),
    upscale_delay_s=st.sampled_from([0.0, 2.0, 10.0, 30.0]),
    downscale_delay_s=st.sampled_from([0.0, 10.0, 600.0]),
    downscale_to_zero_delay_s=st.sampled_from([None, 5.0]),
    upscaling_factor=st.sampled_from([None, 0.5, 2.0]),
    downscaling_factor=st.sampled_from([None, 0.5]),
)


@settings(max_examples=200, deadline=None)
@given(configs, st.floats(0, 20), st.integers(0, 8))
def test_scaling_factors_match_ray(config: ServeAutoscaling, desired: float, current: int) -> None:
    assert apply_scaling_factors(desired, current, config) == policy_module._apply_scaling_factors(
        desired, current, ray_config_of(config)
    )


@settings(max_examples=200, deadline=None)
@given(configs, st.lists(st.tuples(st.integers(0, 8), st.floats(0, 40)), min_size=1, max_size=12))
def test_delay_logic_matches_ray_over_a_sequence(config: ServeAutoscaling, steps: list[tuple[int, float]]) -> None:
    ours, theirs = ControllerState(), {}
    target_ours = target_theirs = 2
    now = 0.0
    for desired, gap in steps:
        now += gap
        target_ours = apply_delay(desired, target_ours, config, ours, now)
        target_theirs, theirs = policy_module._apply_delay_logic(
            desired, target_theirs, ray_config_of(config), theirs, _now=now
        )
        assert target_ours == target_theirs


def ctx(config: ServeAutoscaling, current: int, target: int, total: float) -> SimContext:
    return SimContext(config, current, target, list(range(current)), total, 0.0, {}, {}, 0.0)


@pytest.mark.parametrize(("current", "target", "total"), [(0, 0, 0.0), (0, 0, 3.0), (2, 2, 9.0), (3, 3, 0.5)])
def test_default_policy_matches_ray(current: int, target: int, total: float) -> None:
    config = ServeAutoscaling(min_replicas=0, max_replicas=10)
    real = ray_config.AutoscalingContext(
        deployment_id=None,
        deployment_name="d",
        app_name="a",
        current_num_replicas=current,
        target_num_replicas=target,
        running_replicas=list(range(current)),
        total_num_requests=total,
        total_queued_requests=0.0,
        aggregated_metrics={},
        raw_metrics=None,
        capacity_adjusted_min_replicas=0,
        capacity_adjusted_max_replicas=10,
        policy_state={},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=0.0,
        config=ray_config_of(config),
    )
    ours, _ = default_policy(ctx(config, current, target, total))
    theirs, _ = policy_module.replica_queue_length_autoscaling_policy(real)
    assert math.isclose(ours, theirs)


def test_cold_start_bypasses_delays_and_bounds_apply() -> None:
    config = ServeAutoscaling(min_replicas=0, max_replicas=3, upscale_delay_s=60)
    state = ControllerState()
    assert decide_target(default_policy, ctx(config, 0, 0, 5.0), state) == 1
    assert (
        decide_target(
            lambda c: (50.0, {}), ctx(config, 2, 2, 5.0), ControllerState(decision_since=-100, decision_counter=1)
        )
        == 3
    )
