"""The autoscalers a simulated unit can run: ours, Ray Serve's default, and a KEDA-style one.

Each turns what a unit's replicas reported (averaged over its look-back window) into a target
replica count. Ours is `slm_serving.autoscaling.queue_depth_policy` itself, given a `SimContext` in
place of Serve's `AutoscalingContext`, inside Serve's controller rules (`serve_rules`) with the
autoscaling config the operator builds for the revision. Serve's default runs the same rules with
Serve 2.60's documented defaults. KEDA polls vLLM's `num_requests_waiting` like the Prometheus scaler
does and hands the result to a HorizontalPodAutoscaler.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from slm_operator.sim.serve_rules import (
    ControllerState,
    Policy,
    ServeAutoscaling,
    SimContext,
    decide_target,
    default_policy,
)
from slm_serving.autoscaling import queue_depth_policy
from slm_serving.config import ServeAutoscalingConfig
from slm_serving.protocol import RUNNING_METRIC, WAITING_METRIC


@dataclass(slots=True)
class Reported:
    """One unit's replicas as the autoscaler sees them: totals over RUNNING replicas."""

    ready: int
    target: int
    running: float
    """Requests vLLM runs (look-back mean)."""
    engine_waiting: float
    """Requests waiting inside vLLM (look-back mean)."""
    handle_queued: float
    """Requests waiting in front of the engines: Serve handles, the router while at zero (look-back mean)."""
    waiting_now: float
    """All waiting requests at this instant (what a Prometheus query returns)."""


class Autoscaler(Protocol):
    @property
    def interval_s(self) -> float:
        """How often it decides (Serve: the metrics push interval; KEDA: the polling interval)."""
        ...

    @property
    def look_back_s(self) -> float:
        """Window its averaged inputs cover (0: the latest sample)."""
        ...

    def decide(self, seen: Reported, now: float) -> int: ...


def serve_autoscaling(config: ServeAutoscalingConfig) -> ServeAutoscaling:
    """Serve's view of the autoscaling config the operator wrote into serveConfigV2."""
    return ServeAutoscaling(
        min_replicas=config.min_replicas,
        max_replicas=config.max_replicas,
        target_ongoing_requests=config.target_ongoing_requests,
        upscale_delay_s=config.upscale_delay_s,
        downscale_delay_s=config.downscale_delay_s,
        metrics_interval_s=config.metrics_interval_s,
        look_back_period_s=config.look_back_period_s,
    )


@dataclass
class ServeAutoscaler:
    """Serve's controller around a policy (ours or Serve's default) for one unit."""

    config: ServeAutoscaling
    policy: Policy
    state: ControllerState = field(default_factory=ControllerState)

    @property
    def interval_s(self) -> float:
        return self.config.metrics_interval_s

    @property
    def look_back_s(self) -> float:
        return self.config.look_back_period_s

    def decide(self, seen: Reported, now: float) -> int:
        n = seen.ready
        replicas = list(range(n))
        metrics = (
            {
                WAITING_METRIC: dict.fromkeys(replicas, seen.engine_waiting / n),
                RUNNING_METRIC: dict.fromkeys(replicas, seen.running / n),
            }
            if n
            else {}
        )
        total = seen.running + seen.engine_waiting + seen.handle_queued
        ctx = SimContext(
            self.config, n, seen.target, replicas, total, seen.handle_queued, metrics, self.state.policy_state, now
        )
        return decide_target(self.policy, ctx, self.state)


def queue_depth_autoscaler(config: ServeAutoscalingConfig) -> ServeAutoscaler:
    """The shipped policy with the operator's config for the revision."""
    return ServeAutoscaler(serve_autoscaling(config), queue_depth_policy)


def serve_default_autoscaler(min_replicas: int, max_replicas: int) -> ServeAutoscaler:
    """Serve's default policy with Serve 2.60's documented defaults (target 2 ongoing requests per
    replica, 30 s up / 600 s down, metrics every 10 s over 30 s); only the bounds are the spec's."""
    return ServeAutoscaler(ServeAutoscaling(min_replicas=min_replicas, max_replicas=max_replicas), default_policy)


def serve_default_on(config: ServeAutoscalingConfig) -> ServeAutoscaler:
    """Serve's default policy on the operator's own config (target = targetQueueDepth, the spec's delays):
    what bench/autoscale.py compares against."""
    return ServeAutoscaler(serve_autoscaling(config), default_policy)


@dataclass
class KedaAutoscaler:
    """KEDA 2.x's Prometheus scaler on `sum(vllm:num_requests_waiting)` driving an HPA (autoscaling/v2).

    KEDA polls every `pollingInterval` (default 30 s), activates 0 → 1 above `activationThreshold`
    and goes 1 → 0 after `cooldownPeriod` (default 300 s) without activity (here: no request waiting
    or running, as with a second trigger on `vllm:num_requests_running`); the HPA asks for
    ceil(metric / threshold) replicas (an AverageValue target), ignores changes within its 10 %
    tolerance, scales up at once and down only to the highest recommendation of its 300 s
    stabilization window.
    """

    threshold: float
    min_replicas: int
    max_replicas: int
    interval_s: float = 30.0
    cooldown_s: float = 300.0
    stabilization_s: float = 300.0
    tolerance: float = 0.1
    activation_threshold: float = 0.0
    look_back_s: float = 0.0
    recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    last_active: float = 0.0

    def decide(self, seen: Reported, now: float) -> int:
        metric = seen.waiting_now
        active = metric > self.activation_threshold or seen.running > 0
        if active:
            self.last_active = now
        floor = max(1, self.min_replicas)
        if seen.target == 0:
            return floor if active else 0
        if not active and self.min_replicas == 0 and now - self.last_active >= self.cooldown_s:
            self.recommendations.clear()
            return 0
        current = max(seen.ready, 1)
        ratio = metric / (self.threshold * current)
        desired = seen.target if abs(ratio - 1) <= self.tolerance else math.ceil(metric / self.threshold)
        desired = max(floor, min(self.max_replicas, desired))
        self.recommendations.append((now, desired))
        while self.recommendations and self.recommendations[0][0] < now - self.stabilization_s:
            self.recommendations.popleft()
        if desired >= seen.target:
            return desired
        return min(seen.target, max(r for _, r in self.recommendations))
