"""Autoscalers as the simulator runs them: the shipped queue-depth policy inside Serve's rules, and KEDA."""

from __future__ import annotations

from slm_operator.sim.autoscalers import KedaAutoscaler, Reported, queue_depth_autoscaler, serve_default_autoscaler
from slm_serving.config import ServeAutoscalingConfig

CONFIG = ServeAutoscalingConfig(
    min_replicas=1, max_replicas=4, target_ongoing_requests=8, upscale_delay_s=10, downscale_delay_s=120
)


def test_queue_depth_policy_scales_up_after_the_delay() -> None:
    scaler = queue_depth_autoscaler(CONFIG)
    busy = Reported(ready=2, target=2, running=32, engine_waiting=40, handle_queued=0, waiting_now=40)
    assert scaler.decide(busy, 0.0) == 2  # (2 x 36) / (16 + 8) = 3 wanted, upscale delay not over
    assert scaler.decide(busy, 10.0) == 3
    assert scaler.state.policy_state  # the policy learned its batch capacity (16) and keeps it


def test_queue_depth_policy_uses_requests_queued_in_front_of_the_engines() -> None:
    scaler = queue_depth_autoscaler(CONFIG.model_copy(update={"upscale_delay_s": 0}))
    full = Reported(ready=1, target=1, running=64, engine_waiting=0, handle_queued=200, waiting_now=200)
    assert scaler.decide(full, 0.0) == 4  # 264 / (64 + 8) → 4, the maximum


def test_serve_default_targets_two_ongoing_requests_per_replica() -> None:
    scaler = serve_default_autoscaler(1, 10)
    seen = Reported(ready=1, target=1, running=12, engine_waiting=0, handle_queued=0, waiting_now=0)
    assert scaler.decide(seen, 0.0) == 1  # Serve's 30 s upscale delay
    assert scaler.decide(seen, 30.0) == 6


def test_keda_scales_on_waiting_only_and_holds_scale_down_for_its_window() -> None:
    keda = KedaAutoscaler(threshold=4, min_replicas=1, max_replicas=8)
    assert keda.decide(Reported(2, 2, 100, 0, 0, waiting_now=20), 0.0) == 5
    quiet = Reported(5, 5, 100, 0, 0, waiting_now=0)
    assert keda.decide(quiet, 30.0) == 5  # the 300 s stabilization window remembers 5
    assert keda.decide(quiet, 331.0) == 1  # nothing waits: down to the minimum although 100 run


def test_keda_activates_from_zero_and_cools_down_to_zero() -> None:
    keda = KedaAutoscaler(threshold=4, min_replicas=0, max_replicas=8)
    assert keda.decide(Reported(0, 0, 0, 0, 0, waiting_now=3), 0.0) == 1
    idle = Reported(1, 1, 0, 0, 0, waiting_now=0)
    assert keda.decide(idle, 100.0) == 1
    assert keda.decide(idle, 300.0) == 0
