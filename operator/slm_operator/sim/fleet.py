"""The fleet simulation: SLMDeployments on a fixed pool of GPUs, ticked every `dt` seconds.

A small event loop, not simpy: the work of a tick (requests through every unit's batch) is done for
all units at once with numpy, and the few timed events (a replica becomes RUNNING) sit in one heap;
simpy's process-per-replica style would add an event per unit and tick and buy nothing here.
Each deployment has up to two units (revisions or RayClusters) sharing its traffic by weight; a
unit's autoscaler decides every `interval_s`, and replicas take a GPU from the pool, start for a
sampled start-up time, and then serve. Same scenario and seed, same result.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from slm_operator.api.models import SLMDeploymentSpec
from slm_operator.api.revision import compute_revision, revision_template
from slm_operator.builder.revisions import ReplicaBounds
from slm_operator.builder.serve_config import build_engine_deployment
from slm_operator.sim.autoscalers import (
    Autoscaler,
    KedaAutoscaler,
    Reported,
    queue_depth_autoscaler,
    serve_default_autoscaler,
    serve_default_on,
)
from slm_operator.sim.engine import Engines, UnitParams
from slm_operator.sim.profiles import EngineProfile, Startup
from slm_operator.sim.upgrades import (
    BlueGreenUpgrade,
    IncrementalUpgrade,
    OperatorRollout,
    Upgrade,
    next_revision_spec,
    sim_spec,
    steady_status,
)
from slm_operator.sim.workload import Arrivals, Load

SLOTS = 2
"""Units per deployment: the serving revision and the one replacing it."""
SAMPLES = 16
"""Look-back samples kept per unit (covers Serve's default 30 s at dt = 2 s)."""


class Policy(StrEnum):
    QUEUE = "queue"
    SERVE_DEFAULT = "serve-default"
    """Serve's default policy with Serve's documented defaults."""
    SERVE_DEFAULT_SPEC = "serve-default-spec"
    """Serve's default policy on the operator's config (as bench/autoscale.py compares)."""
    KEDA = "keda"


class Strategy(StrEnum):
    OURS = "ours"
    BLUE_GREEN = "blue-green"
    INCREMENTAL = "incremental"


@dataclass(frozen=True)
class SimDeployment:
    name: str
    spec: SLMDeploymentSpec
    load: Load
    profile: EngineProfile
    slo_ttft_s: float = 1.0
    slo_latency_s: float = 10.0


@dataclass(frozen=True)
class Scenario:
    deployments: tuple[SimDeployment, ...]
    gpus: int
    hours: float
    """Length of the run."""
    seed: int = 0
    start_h: float = 0.0
    """Hour of the day the run starts at (traffic follows the clock; the fleet starts warm)."""
    policy: Policy = Policy.QUEUE
    strategy: Strategy = Strategy.OURS
    rollouts: tuple[tuple[int, float], ...] = ()
    """(deployment index, second the new revision is applied)."""
    dt: float = 2.0
    timeout_s: float = 300.0
    """How long a request may wait for a place in a batch (the router's cold-start timeout)."""
    max_pending: int = 1000
    """Requests held while a unit has no replica (the router's limit)."""


@dataclass
class RolloutResult:
    started_s: float
    gpus_before: int
    peak_gpus: int
    finished_s: float | None = None


@dataclass
class DeploymentResult:
    name: str
    arrived: float
    answered: float
    failed: float
    failed_cold: float
    """Failed while the deployment had no replica (scale to zero)."""
    slo_met: float
    tokens: float
    gpu_seconds: float
    """GPUs held (replicas starting or RUNNING) x seconds."""
    replica_seconds: float
    """Replicas RUNNING x seconds (what bench/autoscale.py integrates)."""
    peak_gpus: int
    ttft_hist: np.ndarray
    latency_hist: np.ndarray
    rollout: RolloutResult | None = None


@dataclass
class FleetResult:
    deployments: list[DeploymentResult]
    gpu_seconds: float
    peak_gpus: int
    rollout_peak_gpus: int
    """Most GPUs the rolled-out deployments held together while any of them was rolling out."""
    wall_s: float

    @property
    def arrived(self) -> float:
        return sum(d.arrived for d in self.deployments)

    @property
    def slo_attainment(self) -> float:
        return sum(d.slo_met for d in self.deployments) / max(self.arrived, 1.0)

    @property
    def failed(self) -> float:
        return sum(d.failed for d in self.deployments)

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600


@dataclass
class _Unit:
    deployment: int
    revision: str | None = None
    autoscaler: Autoscaler | None = None
    every: int = 1
    look_back: int = 1
    """Samples (ticks) averaged for the autoscaler."""
    starts: list[tuple[float, int]] = field(default_factory=list)
    """(ready time, token) of replicas starting."""


def unit_params(deployment: SimDeployment) -> UnitParams:
    spec, profile = deployment.spec, deployment.profile
    engine = build_engine_deployment(spec, revision_template(spec), ReplicaBounds(1, 1))
    ongoing = engine.max_ongoing_requests or 64
    seqs = spec.model.engine_args.get("max_num_seqs")
    batch = profile.max_batch(seqs if isinstance(seqs, int) else None, ongoing)
    return UnitParams(
        itl_s=profile.itl_s,
        itl_per_seq_s=profile.itl_per_seq_s,
        prefill_s=deployment.load.prompt_tokens / profile.prefill_tokens_per_s,
        output_tokens=max(1.0, deployment.load.output_tokens),
        max_batch=batch,
        engine_queue=max(0, ongoing - batch),
        shared_compute=profile.shared_compute,
        startup_slowdown=profile.startup_slowdown,
    )


def stable_autoscaler(policy: Policy, spec: SLMDeploymentSpec) -> Autoscaler:
    bounds = ReplicaBounds(spec.autoscaling.min_replicas, spec.autoscaling.max_replicas)
    if policy is Policy.SERVE_DEFAULT:
        return serve_default_autoscaler(bounds.min_replicas, bounds.max_replicas)
    if policy is Policy.KEDA:
        return KedaAutoscaler(spec.autoscaling.target_queue_depth, bounds.min_replicas, bounds.max_replicas)
    config = build_engine_deployment(spec, revision_template(spec), bounds).autoscaling_config
    assert config is not None
    if policy is Policy.SERVE_DEFAULT_SPEC:
        return serve_default_on(config)
    return queue_depth_autoscaler(config)


def sample_startup(startup: Startup, rng: random.Random) -> float:
    def draw(phase: tuple[float, float]) -> float:
        median, sigma = phase
        return median * math.exp(sigma * rng.gauss(0, 1)) if median > 0 else 0.0

    pull = 0.0 if rng.random() < startup.image_cached else draw(startup.image_pull)
    return draw(startup.schedule) + pull + draw(startup.weight_load) + draw(startup.warmup)


class Fleet:
    """One run of a scenario (use `simulate`)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.dt = scenario.dt
        self.ticks = math.ceil(scenario.hours * 3600 / self.dt)
        deployments = scenario.deployments
        count = len(deployments)
        units = count * SLOTS
        self.engines = Engines(units, self.dt, scenario.timeout_s, scenario.max_pending)
        self.start_s = scenario.start_h * 3600
        self.arrivals = Arrivals([d.load for d in deployments], self.dt, self.ticks, scenario.seed, self.start_s)
        self.rng = random.Random(scenario.seed)
        self.units = [_Unit(u // SLOTS) for u in range(units)]
        self.active: list[int] = []
        """Units with a revision (and so an autoscaler), in order."""
        self.dep_of = np.repeat(np.arange(count), SLOTS)
        self.weight = np.zeros(units)
        self.ready_n = np.zeros(units, dtype=np.int64)
        self.target_n = np.zeros(units, dtype=np.int64)
        self.pending = np.zeros(units, dtype=np.int64)
        self.starting_n = np.zeros(units, dtype=np.int64)
        self.gpus_per = np.repeat([max(1, d.spec.resources.gpus_per_replica) for d in deployments], SLOTS)
        self.free_gpus = scenario.gpus
        self.queue: deque[int] = deque()
        self.events: list[tuple[float, int, int]] = []
        self.cancelled: set[int] = set()
        self.token = 0
        self.samples = np.zeros((4, units, SAMPLES))
        self.params = [unit_params(d) for d in deployments]
        self.gpu_seconds = np.zeros(count)
        self.replica_seconds = np.zeros(count)
        self.peak = np.zeros(count, dtype=np.int64)
        self.fleet_peak = 0
        self.rollout_peak = 0
        self.upgrades: dict[int, tuple[float, Upgrade]] = {}
        self.rollouts: dict[int, RolloutResult] = {}
        self.next_pass: dict[int, float] = {}
        for index, deployment in enumerate(deployments):
            spec = sim_spec(deployment.spec)
            start = max(spec.autoscaling.min_replicas, 1)
            unit = self.open_unit(index, compute_revision(spec), 100, stable_autoscaler(scenario.policy, spec), start)
            self._start_warm(unit)
        for index, at in scenario.rollouts:
            self.upgrades[index] = (at, self._upgrade(index))

    # ---------------------------------------------------------------- FleetOps (used by upgrades)

    def open_unit(self, deployment: int, revision: str, weight: int, autoscaler: Autoscaler, target: int) -> int:
        unit = next(u for u in range(deployment * SLOTS, (deployment + 1) * SLOTS) if self.units[u].revision is None)
        d = self.scenario.deployments[deployment]
        self.engines.configure(unit, self.params[deployment], d.slo_ttft_s, d.slo_latency_s)
        self.units[unit].revision = revision
        self.set_autoscaler(unit, autoscaler)
        self.set_weight(unit, weight)
        self.apply_target(unit, target)
        return unit

    def close_unit(self, unit: int) -> None:
        self.apply_target(unit, 0)
        self.units[unit].revision, self.units[unit].autoscaler = None, None
        self.weight[unit] = 0.0
        self.active.remove(unit)

    def set_weight(self, unit: int, weight: int) -> None:
        self.weight[unit] = weight / 100

    def set_autoscaler(self, unit: int, autoscaler: Autoscaler) -> None:
        state = self.units[unit]
        state.autoscaler = autoscaler
        state.every = max(1, round(autoscaler.interval_s / self.dt))
        state.look_back = max(1, min(SAMPLES, round(autoscaler.look_back_s / self.dt)))
        if unit not in self.active:
            self.active.append(unit)
            self.active.sort()

    def units_of(self, deployment: int) -> dict[str, int]:
        found = {}
        for unit in range(deployment * SLOTS, (deployment + 1) * SLOTS):
            name = self.units[unit].revision
            if name is not None:
                found[name] = unit
        return found

    def ready(self, unit: int) -> int:
        return int(self.ready_n[unit])

    def target(self, unit: int) -> int:
        return int(self.target_n[unit])

    def counters(self, unit: int) -> tuple[float, float, np.ndarray, np.ndarray]:
        e = self.engines
        return float(e.admitted[unit]), float(e.failed[unit]), e.ttft_hist[unit].copy(), e.latency_hist[unit].copy()

    # ---------------------------------------------------------------- replicas and GPUs

    def apply_target(self, unit: int, target: int) -> None:
        self.target_n[unit] = target
        state = self.units[unit]
        have = int(self.ready_n[unit]) + len(state.starts) + int(self.pending[unit])
        if target > have:
            self.pending[unit] += target - have
            self.queue.extend([unit] * (target - have))
            return
        surplus = have - target
        drop = min(surplus, int(self.pending[unit]))
        self.pending[unit] -= drop
        surplus -= drop
        while surplus and state.starts:
            _, token = state.starts.pop()
            self.cancelled.add(token)
            self.starting_n[unit] -= 1
            self.free_gpus += int(self.gpus_per[unit])
            surplus -= 1
        if surplus:
            self.ready_n[unit] -= surplus
            self.free_gpus += surplus * int(self.gpus_per[unit])

    def _start_warm(self, unit: int) -> None:
        """Replicas that run before the simulation starts: RUNNING at once."""
        while self.pending[unit] and self.free_gpus >= self.gpus_per[unit]:
            self.pending[unit] -= 1
            self.free_gpus -= int(self.gpus_per[unit])
            self.ready_n[unit] += 1
        self.queue = deque(u for u in self.queue if u != unit or self.pending[u] > 0)

    def _allocate(self, now: float) -> None:
        skipped: deque[int] = deque()
        while self.queue:
            unit = self.queue.popleft()
            if self.pending[unit] <= 0:
                continue
            need = int(self.gpus_per[unit])
            if self.free_gpus < need:
                skipped.append(unit)
                continue
            self.free_gpus -= need
            self.pending[unit] -= 1
            profile = self.scenario.deployments[self.units[unit].deployment].profile
            ready_at = now + sample_startup(profile.startup, self.rng)
            self.token += 1
            self.starting_n[unit] += 1
            self.units[unit].starts.append((ready_at, self.token))
            self.units[unit].starts.sort()
            heapq.heappush(self.events, (ready_at, self.token, unit))
        self.queue = skipped

    def _fire(self, now: float) -> None:
        while self.events and self.events[0][0] <= now:
            _, token, unit = heapq.heappop(self.events)
            if token in self.cancelled:
                self.cancelled.discard(token)
                continue
            starts = self.units[unit].starts
            starts.remove(next(s for s in starts if s[1] == token))
            self.starting_n[unit] -= 1
            self.ready_n[unit] += 1

    # ---------------------------------------------------------------- the loop

    def _upgrade(self, index: int) -> Upgrade:
        spec = sim_spec(self.scenario.deployments[index].spec)
        strategy = self.scenario.strategy
        if strategy is Strategy.BLUE_GREEN:
            return BlueGreenUpgrade(index, spec)
        if strategy is Strategy.INCREMENTAL:
            return IncrementalUpgrade(index, spec)
        return OperatorRollout(index, next_revision_spec(spec), steady_status(spec, 0))

    def _step_upgrades(self, now: float, gpus: np.ndarray) -> None:
        for index, (at, upgrade) in self.upgrades.items():
            result = self.rollouts.get(index)
            if result is None:
                if now >= at:
                    upgrade.start(self, now)
                    self.rollouts[index] = RolloutResult(now, int(gpus[index]), int(gpus[index]))
                    self.next_pass[index] = now
                continue
            if result.finished_s is None and now >= self.next_pass[index]:
                if upgrade.step(self, now):
                    result.finished_s = now
                self.next_pass[index] = now + upgrade.interval_s

    def _autoscale(self, tick: int, now: float) -> None:
        due = [u for u in self.active if not tick % self.units[u].every]
        if not due:
            return
        running, engine_waiting, handle_queued, _ = self.samples
        means: dict[int, tuple[list[float], list[float], list[float]]] = {}
        ready, target, now_waiting = self.ready_n.tolist(), self.target_n.tolist(), self.engines.queued.tolist()
        units = self.units
        for unit in due:
            state = units[unit]
            k = state.look_back
            found = means.get(k)
            if found is None:
                columns = (tick - np.arange(k)) % SAMPLES
                found = means[k] = (
                    running[:, columns].mean(axis=1).tolist(),
                    engine_waiting[:, columns].mean(axis=1).tolist(),
                    handle_queued[:, columns].mean(axis=1).tolist(),
                )
            seen = Reported(
                ready[unit], target[unit], found[0][unit], found[1][unit], found[2][unit], now_waiting[unit]
            )
            assert state.autoscaler is not None
            wanted = state.autoscaler.decide(seen, now)
            if wanted != target[unit]:
                self.apply_target(unit, wanted)

    def run(self) -> FleetResult:
        started = time.perf_counter()
        engines, dt = self.engines, self.dt
        rolled = np.zeros(len(self.scenario.deployments), dtype=bool)
        for index, _ in self.scenario.rollouts:
            rolled[index] = True
        for tick in range(self.ticks):
            now = self.start_s + tick * dt
            self._fire(now)
            if self.queue:
                self._allocate(now)
            starting = self.starting_n
            allocated = (self.ready_n + starting) * self.gpus_per
            gpus = np.bincount(self.dep_of, weights=allocated, minlength=len(rolled))
            if self.upgrades:
                self._step_upgrades(now, gpus)
            arrivals = self.arrivals.draw(tick)[self.dep_of] * self.weight
            engines.ready[:] = self.ready_n
            engines.starting[:] = starting
            engines.step(tick, arrivals)
            column = tick % SAMPLES
            waiting = engines.engine_waiting()
            self.samples[0, :, column] = engines.running
            self.samples[1, :, column] = waiting
            self.samples[2, :, column] = engines.queued - waiting
            self._autoscale(tick, now)
            self.gpu_seconds += gpus * dt
            self.replica_seconds += np.bincount(self.dep_of, weights=self.ready_n, minlength=len(rolled)) * dt
            np.maximum(self.peak, gpus.astype(np.int64), out=self.peak)
            self.fleet_peak = max(self.fleet_peak, int(gpus.sum()))
            self._track_rollouts(gpus, rolled)
        return self._result(time.perf_counter() - started)

    def _track_rollouts(self, gpus: np.ndarray, rolled: np.ndarray) -> None:
        active = False
        for index, result in self.rollouts.items():
            if result.finished_s is None:
                active = True
                result.peak_gpus = max(result.peak_gpus, int(gpus[index]))
        if active:
            self.rollout_peak = max(self.rollout_peak, int(gpus[rolled].sum()))

    def _result(self, wall_s: float) -> FleetResult:
        e = self.engines
        results = []
        for index, deployment in enumerate(self.scenario.deployments):
            units = slice(index * SLOTS, (index + 1) * SLOTS)
            results.append(
                DeploymentResult(
                    name=deployment.name,
                    arrived=float(e.arrived[units].sum()),
                    answered=float(e.admitted[units].sum()),
                    failed=float(e.failed[units].sum()),
                    failed_cold=float(e.failed_cold[units].sum()),
                    slo_met=float(e.slo_met[units].sum()),
                    tokens=float(e.tokens[units].sum()),
                    gpu_seconds=float(self.gpu_seconds[index]),
                    replica_seconds=float(self.replica_seconds[index]),
                    peak_gpus=int(self.peak[index]),
                    ttft_hist=e.ttft_hist[units].sum(axis=0),
                    latency_hist=e.latency_hist[units].sum(axis=0),
                    rollout=self.rollouts.get(index),
                )
            )
        return FleetResult(results, float(self.gpu_seconds.sum()), self.fleet_peak, self.rollout_peak, wall_s)


def simulate(scenario: Scenario) -> FleetResult:
    return Fleet(scenario).run()
