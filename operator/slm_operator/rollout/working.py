"""One pass of the rollout state machine: its inputs, its working copy of the status, and the
bookkeeping every transition shares (weights, draining, conditions, events, phase). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from slm_operator.api.models import (
    ConditionType,
    Phase,
    RevisionStatus,
    SLMDeploymentSpec,
    SLMDeploymentStatus,
)
from slm_operator.api.revision import compute_revision, revision_template
from slm_operator.rollout import adapters, shadow
from slm_operator.rollout.actions import Action, ApplyRevisions, ClearCommand, EmitEvent
from slm_operator.rollout.adapters import AdapterObservation
from slm_operator.rollout.commands import InvalidCommandError, RolloutCommand, parse_rollout_command
from slm_operator.rollout.conditions import ConditionStatus, find_condition, format_time, is_true, set_condition
from slm_operator.rollout.cost import Prices
from slm_operator.rollout.gate import ValidationRun
from slm_operator.rollout.live import LiveLimits, LiveSamples
from slm_operator.rollout.shadow import ShadowWindow
from slm_operator.rollout.start_failure import StartFailure


class Reason(StrEnum):
    """Condition and Event reasons."""

    DEPLOYING = "Deploying"
    SERVING = "StableServing"
    NOT_RUNNING = "StableNotRunning"
    ROLLOUT_STARTED = "RolloutStarted"
    VALIDATING = "Validating"
    VALIDATION_PASSED = "ValidationPassed"
    VALIDATION_FAILED = "ValidationFailed"
    SHADOW_STARTED = "ShadowStarted"
    SHADOW_PASSED = "ShadowPassed"
    SHADOW_DISAGREEMENT = shadow.SHADOW_DISAGREEMENT
    """The canary's answers to copied live requests disagree with the users' (`rollout.shadow`)."""
    SHADOW_ERRORS = shadow.SHADOW_ERRORS
    SHADOW_LATENCY = shadow.SHADOW_LATENCY
    SHADOW_TIMEOUT = shadow.SHADOW_TIMEOUT
    STEP_STARTED = "TrafficStepStarted"
    STEP_TIMEOUT = "TrafficStepTimeout"
    """A traffic step's live comparison was still not conclusive maxWaitSeconds after its pause."""
    PAUSED = "Paused"
    RESUMED = "Resumed"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    CANARY_FAILED = "CanaryFailed"
    """A check failed with autoRollback false: traffic is back on the stable, the canary kept."""
    SUPERSEDED = "Superseded"
    STABLE_REQUESTED = "StableRequested"
    QUALITY_FAILED = "QualityCheckFailed"
    QUALITY_PASSED = "QualityCheckPassed"
    COMMAND_IGNORED = "CommandIgnored"
    START_FAILING = "ReplicaStartFailing"
    """A replica of a new revision failed to start; Serve retries (bounded)."""
    START_FAILED = "ReplicaStartFailed"
    """Serve gave up starting the revision's replicas."""
    SCALED = "Scaled"
    """The autoscaler changed how many replicas a revision wants."""
    ADAPTERS_STABLE = adapters.ADAPTERS_STABLE
    """`AdaptersReady` (`rollout.adapters.adapters_condition`): every adapter serves its spec's version."""
    ADAPTER_ROLLING_OUT = adapters.ADAPTER_ROLLING_OUT
    ADAPTER_ROLLED_BACK = adapters.ADAPTER_ROLLED_BACK


DEFAULT_MIN_STEP_REQUESTS = 40
"""Canary requests before a step is judged: the rank test's normal approximation is accurate from ~20
a side, and a 1.5x shift of typical latency spread shows at p < 0.01 with 40."""


@dataclass(frozen=True)
class RolloutSettings:
    """Operator-wide knobs of the state machine (not per SLMDeployment)."""

    min_step_requests: int = DEFAULT_MIN_STEP_REQUESTS
    """Canary requests a traffic step needs before its live metrics are judged; until then the step
    waits (a person may `promote`). 0 judges whatever arrived."""
    canary_start_timeout_s: int = 1800
    """How long a new canary may take to run (weights download, engine start) before the rollout fails."""
    decisive_step_requests: int = 400
    """Canary latency samples after which a latency comparison that is still not significant either way
    passes (a canary is rolled back only on evidence); until then the step waits."""
    live_significance: float = 0.01
    """alpha of the live comparison's one-sided tests (see `rollout.live`)."""
    prices: Prices = field(default_factory=Prices)
    """Chart-wide prices per GPU-hour and CPU-core-hour (see `rollout.cost`)."""

    @property
    def live_limits(self) -> LiveLimits:
        return LiveLimits(self.min_step_requests, self.decisive_step_requests, self.live_significance)


@dataclass(frozen=True)
class Observation:
    """What the shell saw this pass."""

    running: frozenset[str] = frozenset()
    """Revisions whose Serve application is RUNNING."""
    ready_replicas: Mapping[str, int] = field(default_factory=dict)
    """Ready replicas per revision."""
    desired_replicas: Mapping[str, int] = field(default_factory=dict)
    """Replicas the autoscaler wants per revision (Serve's target); one left out keeps its last value."""
    routes_settled: bool = False
    """The router serves exactly the weights of the status passed in (drained revisions may go)."""
    validation: ValidationRun | None = None
    """Outcome of a RunValidation asked for earlier; hand each run over once."""
    live: LiveSamples | None = None
    """The router's recent requests of canary and stable, asked for by ObserveMetrics."""
    shadow: ShadowWindow | None = None
    """The router's latest shadow counts, asked for by ObserveShadow (cumulative: may be handed again)."""
    command: str | None = None
    """Value of the `slm.dev/rollout-command` annotation."""
    start_failures: Mapping[str, StartFailure] = field(default_factory=dict)
    """Revisions whose replicas failed to start (see `rollout.start_failure`)."""
    adapters: AdapterObservation = field(default_factory=AdapterObservation)
    """The adapter versions the stable's engines hold, and finished adapter validations."""


@dataclass(frozen=True)
class Decision:
    status: SLMDeploymentStatus
    actions: tuple[Action, ...]


class Working:
    """One call of `decide`: a working copy of the status and the actions gathered so far."""

    def __init__(
        self,
        spec: SLMDeploymentSpec,
        status: SLMDeploymentStatus,
        observed: Observation,
        generation: int,
        now: datetime,
        settings: RolloutSettings,
    ) -> None:
        self.spec = spec
        self.generation = generation
        self.before = status
        self.status = status.model_copy(deep=True)
        self.observed = observed
        self.now_dt = now
        self.now = format_time(now)
        self.settings = settings
        self.actions: list[Action] = []
        self.desired = compute_revision(spec)
        self.message = ""
        self.command_consumed = False
        self.command = self._parse_command()

    def result(self) -> Decision:
        self._remove_drained()
        self._summarize()
        before = _weights(self.before.revisions)
        after = _weights(self.status.revisions)
        actions = [ApplyRevisions(after)] if after != before else []
        return Decision(status=self.status, actions=(*actions, *self.actions))

    def _parse_command(self) -> RolloutCommand | None:
        try:
            return parse_rollout_command(self.observed.command)
        except InvalidCommandError as error:
            self.actions += [EmitEvent("Warning", Reason.COMMAND_IGNORED, str(error)), ClearCommand()]
            return None

    # ------------------------------------------------------------------ bookkeeping

    def _drain_canary(self) -> None:
        """Traffic back to the stable; the canary stays listed (weight 0) until the router lets go."""
        self._set_canary_weight(0)
        self.status.canary_revision, self.status.rollout = None, None

    def _set_canary_weight(self, weight: int) -> None:
        st = self.status
        for entry in st.revisions:
            if entry.name == st.canary_revision:
                entry.weight = weight
            elif entry.name == st.stable_revision:
                entry.weight = 100 - weight

    def _remove_drained(self) -> None:
        """Drop drained revisions that had weight 0 in the status the router has settled on."""
        if not self.observed.routes_settled:
            return
        st = self.status
        live = {st.stable_revision, st.canary_revision}
        zero_before = {r.name for r in self.before.revisions if r.weight == 0}
        st.revisions = [r for r in st.revisions if r.name in live or r.name not in zero_before]

    def _summarize(self) -> None:
        st = self.status
        order = {st.stable_revision: 0, st.canary_revision: 1}
        st.revisions.sort(key=lambda r: order.get(r.name, 2))
        wanted_before = {r.name: r.desired_replicas for r in self.before.revisions}
        for entry in st.revisions:
            entry.start_failure = self._start_failure(entry)
            entry.ready_replicas = self.observed.ready_replicas.get(entry.name, 0)
            entry.desired_replicas = self.observed.desired_replicas.get(entry.name, entry.desired_replicas)
            old = wanted_before.get(entry.name)
            if old is not None and entry.desired_replicas is not None and old != entry.desired_replicas:
                self._event(
                    "Normal", Reason.SCALED, f"revision {entry.name}: {old} → {entry.desired_replicas} replicas wanted"
                )
        st.ready_replicas = sum(r.ready_replicas for r in st.revisions)
        st.canary_weight = next((r.weight for r in st.revisions if r.name == st.canary_revision), 0)
        st.observed_generation = self.generation
        stable_running = st.stable_revision is not None and st.stable_revision in self.observed.running
        was_serving = self.before.phase not in (Phase.PENDING, Phase.DEPLOYING) and not self._had(
            ConditionType.DEGRADED, Reason.START_FAILED
        )
        degraded = find_condition(st.conditions, ConditionType.DEGRADED)
        if stable_running:
            self._condition(ConditionType.READY, "True", Reason.SERVING, f"revision {st.stable_revision} serves")
        elif degraded is not None and degraded.status == "True" and degraded.reason in _START_REASONS:
            self._condition(ConditionType.READY, "False", Reason(degraded.reason), degraded.message)
        elif was_serving and st.stable_revision is not None:
            self._condition(
                ConditionType.READY,
                "False",
                Reason.NOT_RUNNING,
                f"revision {st.stable_revision} is not running",
            )
        else:
            self._condition(ConditionType.READY, "False", Reason.DEPLOYING, f"deploying revision {st.stable_revision}")
        st.phase = self._phase(stable_running, was_serving)
        st.message = self.message or self._standing_message()

    def _start_failure(self, entry: RevisionStatus) -> str | None:
        """The first failed start's error, kept while the revision does not run (Serve reports only the
        latest); gone once it runs."""
        if entry.name in self.observed.running:
            return None
        failure = self.observed.start_failures.get(entry.name)
        return entry.start_failure or (failure.error if failure is not None else None)

    def _phase(self, stable_running: bool, was_serving: bool) -> Phase:
        st = self.status
        if st.rollout is not None and st.canary_revision is not None:
            if st.rollout.paused and is_true(st.conditions, ConditionType.DEGRADED, Reason.CANARY_FAILED):
                return Phase.DEGRADED
            if st.rollout.paused:
                return Phase.PAUSED
            if st.rollout.step >= 0:
                return Phase.PROGRESSING
            return Phase.SHADOWING if st.rollout.shadow_started_at is not None else Phase.VALIDATING
        if not stable_running and is_true(st.conditions, ConditionType.DEGRADED, Reason.START_FAILED):
            return Phase.FAILED
        if not stable_running:
            return Phase.DEGRADED if was_serving else Phase.DEPLOYING
        return Phase.DEGRADED if is_true(st.conditions, ConditionType.DEGRADED) else Phase.READY

    def _standing_message(self) -> str:
        """Nothing happened this pass: say why the phase is what it is."""
        conditions = self.status.conditions
        kind = ConditionType.DEGRADED if is_true(conditions, ConditionType.DEGRADED) else ConditionType.READY
        found = find_condition(conditions, kind)
        return found.message if found is not None else ""

    def _had(self, kind: ConditionType, *reasons: Reason) -> bool:
        """The status passed in has condition `kind` true for one of `reasons`."""
        found = find_condition(self.before.conditions, kind)
        return found is not None and found.status == "True" and found.reason in {r.value for r in reasons}

    def _same_generation(self) -> bool:
        degraded = find_condition(self.status.conditions, ConditionType.DEGRADED)
        return degraded is not None and degraded.observed_generation == self.generation

    def _entry(self, name: str, role: Literal["stable", "canary"], weight: int) -> RevisionStatus:
        return RevisionStatus(name=name, role=role, weight=weight, template=revision_template(self.spec))

    def _condition(self, kind: ConditionType, status: ConditionStatus, reason: Reason, message: str) -> None:
        self.status.conditions = set_condition(
            self.status.conditions,
            kind,
            status,
            reason.value,
            message,
            now=self.now,
            generation=self.generation,
        )

    def _event(self, kind: Literal["Normal", "Warning"], reason: Reason, message: str) -> None:
        self.actions.append(EmitEvent(kind, reason.value, message))


_START_REASONS = frozenset({Reason.START_FAILING.value, Reason.START_FAILED.value})
"""Degraded reasons of a stable whose replicas fail to start: Ready says the same while it does not run."""


def _weights(revisions: list[RevisionStatus]) -> tuple[tuple[str, int], ...]:
    return tuple((r.name, r.weight) for r in revisions)
