"""Rolling a deployment to a new revision: ours (the operator's state machine), KubeRay's blue/green,
and KubeRay's incremental upgrade.

`OperatorRollout` calls `slm_operator.rollout.decide` every rollout pass (the operator's 5 s timer)
with what the simulated fleet shows, and carries out its actions; the replica bounds of each
revision come from `slm_operator.builder.revisions.revision_bounds`, its Serve autoscaling config
from `build_engine_deployment`. The simulated canary is a good one: its golden prompts are answered
(they are not judged here; the spec's prompts are dropped) and its live samples are the fleet's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import numpy as np

from slm_operator.api.models import SLMDeploymentSpec, SLMDeploymentStatus
from slm_operator.api.revision import compute_revision, revision_template
from slm_operator.builder.revisions import ReplicaBounds, revision_bounds
from slm_operator.builder.serve_config import build_engine_deployment
from slm_operator.rollout.actions import ApplyRevisions, ObserveMetrics, RunValidation
from slm_operator.rollout.decide import Observation, decide
from slm_operator.rollout.gate import ValidationRun
from slm_operator.rollout.live import LiveSamples, RevisionSamples
from slm_operator.sim.autoscalers import Autoscaler, Reported, queue_depth_autoscaler
from slm_operator.sim.engine import EDGES
from slm_serving.samples import DEFAULT_WINDOW

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
ROLLOUT_PASS_S = 5.0
"""The operator's `rollout_interval_seconds`."""
ROUTES_SETTLE_S = 10.0
"""The operator's `routes_settle_seconds`."""
VALIDATION_S = 15.0
"""Golden prompts sent to canary and stable and answered (estimate)."""
KUBERAY_DELETION_DELAY_S = 60.0
"""KubeRay deletes the old RayCluster this long after the switch (RayClusterDeletionDelaySeconds default)."""


class FleetOps(Protocol):
    """What an upgrade may read and do in the fleet."""

    def open_unit(self, deployment: int, revision: str, weight: int, autoscaler: Autoscaler, target: int) -> int: ...
    def close_unit(self, unit: int) -> None: ...
    def set_weight(self, unit: int, weight: int) -> None: ...
    def set_autoscaler(self, unit: int, autoscaler: Autoscaler) -> None: ...
    def units_of(self, deployment: int) -> dict[str, int]: ...
    def ready(self, unit: int) -> int: ...
    def target(self, unit: int) -> int: ...
    def counters(self, unit: int) -> tuple[float, float, np.ndarray, np.ndarray]: ...


class Upgrade(Protocol):
    interval_s: float

    def start(self, fleet: FleetOps, now: float) -> None: ...
    def step(self, fleet: FleetOps, now: float) -> bool:
        """One pass; True once the upgrade is over (one revision left)."""
        ...


@dataclass
class FixedReplicas:
    """A unit held at a replica count (a KubeRay pending cluster before the switch)."""

    replicas: int
    interval_s: float = 2.0
    look_back_s: float = 0.0

    def decide(self, seen: Reported, now: float) -> int:
        return self.replicas


def sim_spec(spec: SLMDeploymentSpec) -> SLMDeploymentSpec:
    """The spec as simulated: golden prompts dropped (the simulated canary answers them correctly)."""
    validation = spec.rollout.validation.model_copy(update={"prompts": []})
    return spec.model_copy(update={"rollout": spec.rollout.model_copy(update={"validation": validation})})


def next_revision_spec(spec: SLMDeploymentSpec) -> SLMDeploymentSpec:
    """The same spec with a new model revision: what a user's upgrade looks like to the operator."""
    model = spec.model.model_copy(update={"revision": f"{spec.model.revision or 'main'}-next"})
    return spec.model_copy(update={"model": model})


def _at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def _autoscaler(spec: SLMDeploymentSpec, status: SLMDeploymentStatus, name: str, bounds: ReplicaBounds) -> Autoscaler:
    template = next(r.template for r in status.revisions if r.name == name)
    config = build_engine_deployment(spec, template, bounds).autoscaling_config
    assert config is not None
    return queue_depth_autoscaler(config)


def steady_status(spec: SLMDeploymentSpec, now: float) -> SLMDeploymentStatus:
    """The status the operator holds for `spec` once its revision serves (two passes of `decide`)."""
    revision = compute_revision(spec)
    running = Observation(running=frozenset({revision}), routes_settled=True)
    first = decide(spec, None, running, generation=1, now=_at(now))
    return decide(spec, first.status, running, generation=1, now=_at(now)).status


@dataclass
class OperatorRollout:
    """The operator's canary rollout of `deployment` to `new_spec`, beside the stable, in one cluster."""

    deployment: int
    new_spec: SLMDeploymentSpec
    status: SLMDeploymentStatus
    interval_s: float = ROLLOUT_PASS_S
    generation: int = 2
    last_apply: float = -math.inf
    validation_due: tuple[float, ValidationRun] | None = None
    snapshots: dict[str, dict[str, tuple[float, float, np.ndarray, np.ndarray]]] = field(default_factory=dict)
    bounds: dict[str, ReplicaBounds] = field(default_factory=dict)

    def start(self, fleet: FleetOps, now: float) -> None:
        self.bounds = revision_bounds(self.new_spec, self.status)

    def step(self, fleet: FleetOps, now: float) -> bool:
        units = fleet.units_of(self.deployment)
        observed = Observation(
            running=frozenset(name for name, unit in units.items() if fleet.ready(unit) > 0),
            ready_replicas={name: fleet.ready(unit) for name, unit in units.items()},
            desired_replicas={name: fleet.target(unit) for name, unit in units.items()},
            routes_settled=now - self.last_apply >= ROUTES_SETTLE_S,
            validation=self._validation(now),
            live=self._live(fleet, units),
        )
        decision = decide(self.new_spec, self.status, observed, generation=self.generation, now=_at(now))
        self.status = decision.status
        for action in decision.actions:
            if isinstance(action, RunValidation) and self.validation_due is None:
                run = ValidationRun(action.revision, (), baseline_revision=action.baseline)
                self.validation_due = (now + VALIDATION_S, run)
            elif isinstance(action, ObserveMetrics):
                self._snapshot(fleet, units, action)
        self._apply(fleet, now, units, decision.actions)
        return self.status.canary_revision is None and len(self.status.revisions) == 1

    def _validation(self, now: float) -> ValidationRun | None:
        if self.validation_due is not None and now >= self.validation_due[0]:
            run = self.validation_due[1]
            self.validation_due = None
            return run
        return None

    def _snapshot(self, fleet: FleetOps, units: dict[str, int], action: ObserveMetrics) -> None:
        if action.since not in self.snapshots:
            names = (action.canary, action.stable)
            self.snapshots = {action.since: {n: fleet.counters(units[n]) for n in names if n in units}}

    def _live(self, fleet: FleetOps, units: dict[str, int]) -> LiveSamples | None:
        canary = self.status.canary_revision
        stable = self.status.stable_revision
        if canary is None or stable is None or not self.snapshots or canary not in units or stable not in units:
            return None
        base = next(iter(self.snapshots.values()))
        if canary not in base or stable not in base:
            return None

        def samples(name: str) -> RevisionSamples:
            admitted, failed, ttft, latency = fleet.counters(units[name])
            before = base[name]
            return RevisionSamples(
                requests=int(admitted - before[0] + failed - before[1]),
                errors=int(failed - before[1]),
                latency_ms=_window_samples_ms(latency - before[3]),
                ttft_ms=_window_samples_ms(ttft - before[2]),
            )

        return LiveSamples(canary_revision=canary, canary=samples(canary), stable=samples(stable))

    def _apply(self, fleet: FleetOps, now: float, units: dict[str, int], actions: tuple[object, ...]) -> None:
        weights = {r.name: r.weight for r in self.status.revisions}
        bounds = revision_bounds(self.new_spec, self.status)
        if any(isinstance(a, ApplyRevisions) for a in actions):
            self.last_apply = now
        for name, unit in units.items():
            if name not in weights:
                fleet.close_unit(unit)
        for name, weight in weights.items():
            if name not in units:
                autoscaler = _autoscaler(self.new_spec, self.status, name, bounds[name])
                fleet.open_unit(self.deployment, name, weight, autoscaler, bounds[name].min_replicas)
                continue
            fleet.set_weight(units[name], weight)
            if self.bounds.get(name) != bounds[name]:
                fleet.set_autoscaler(units[name], _autoscaler(self.new_spec, self.status, name, bounds[name]))
        self.bounds = bounds


def _window_samples_ms(histogram: np.ndarray) -> tuple[float, ...]:
    """A histogram of the step's requests as the router's sample window would hold them: one sample
    per request at its bin's upper edge, evenly thinned to the window's size."""
    counts = np.maximum(histogram.astype(np.int64), 0)
    values = np.repeat(EDGES[1:], counts) * 1000
    if len(values) > DEFAULT_WINDOW:
        values = values[np.linspace(0, len(values) - 1, DEFAULT_WINDOW).astype(np.intp)]
    return tuple(float(v) for v in values)


@dataclass
class BlueGreenUpgrade:
    """KubeRay's `NewCluster` upgrade: a second RayCluster at the active one's size, traffic switched
    at once when its Serve applications are healthy, the old cluster deleted 60 s later."""

    deployment: int
    spec: SLMDeploymentSpec
    interval_s: float = 2.0
    blue: int = -1
    green: int = -1
    size: int = 0
    switched_at: float | None = None

    def start(self, fleet: FleetOps, now: float) -> None:
        (self.blue,) = fleet.units_of(self.deployment).values()
        self.size = max(1, fleet.target(self.blue))
        self.green = fleet.open_unit(self.deployment, "green", 0, FixedReplicas(self.size), self.size)

    def step(self, fleet: FleetOps, now: float) -> bool:
        if self.switched_at is None:
            if fleet.ready(self.green) >= self.size:
                fleet.set_weight(self.green, 100)
                fleet.set_weight(self.blue, 0)
                fleet.set_autoscaler(self.green, _spec_autoscaler(self.spec))
                self.switched_at = now
            return False
        if now - self.switched_at >= KUBERAY_DELETION_DELAY_S:
            fleet.close_unit(self.blue)
            return True
        return False


@dataclass
class IncrementalUpgrade:
    """KubeRay 1.5's `NewClusterWithIncrementalUpgrade`: the new cluster's Serve `target_capacity`
    grows by `max_surge_percent`, traffic follows by `step_size_percent` every `interval_s` once its
    replicas are up, then the old cluster's capacity shrinks by the same surge; repeat to 100 %.
    Defaults are the values of KubeRay's guide (20 %, 5 %, 10 s)."""

    deployment: int
    spec: SLMDeploymentSpec
    max_surge_percent: int = 20
    step_size_percent: int = 5
    interval_s: float = 10.0
    old: int = -1
    new: int = -1
    old_capacity: int = 100
    new_capacity: int = 0
    traffic: int = 0

    def start(self, fleet: FleetOps, now: float) -> None:
        (self.old,) = fleet.units_of(self.deployment).values()
        self.new = fleet.open_unit(self.deployment, "pending", 0, FixedReplicas(0), 0)

    def step(self, fleet: FleetOps, now: float) -> bool:
        if self.traffic < self.new_capacity:
            if fleet.target(self.new) > 0 and fleet.ready(self.new) >= fleet.target(self.new):
                self.traffic = min(self.new_capacity, self.traffic + self.step_size_percent)
                fleet.set_weight(self.new, self.traffic)
                fleet.set_weight(self.old, 100 - self.traffic)
            return False
        if self.new_capacity >= 100 and self.traffic >= 100:
            fleet.close_unit(self.old)
            fleet.set_autoscaler(self.new, _spec_autoscaler(self.spec))
            return True
        if self.old_capacity + self.new_capacity <= 100:
            self.new_capacity = min(100, self.new_capacity + self.max_surge_percent)
            fleet.set_autoscaler(self.new, _spec_autoscaler(self.spec, self.new_capacity))
        else:
            self.old_capacity = max(0, self.old_capacity - self.max_surge_percent)
            fleet.set_autoscaler(self.old, _spec_autoscaler(self.spec, self.old_capacity))
        return False


def _spec_autoscaler(spec: SLMDeploymentSpec, target_capacity: int = 100) -> Autoscaler:
    """Our autoscaler with the spec's bounds scaled by Serve's `target_capacity` (ceil, as Serve does)."""
    if target_capacity <= 0:
        return FixedReplicas(0)
    autoscaling = spec.autoscaling
    bounds = ReplicaBounds(
        math.ceil(autoscaling.min_replicas * target_capacity / 100),
        max(1, math.ceil(autoscaling.max_replicas * target_capacity / 100)),
    )
    config = build_engine_deployment(spec, revision_template(spec), bounds).autoscaling_config
    assert config is not None
    return queue_depth_autoscaler(config)
