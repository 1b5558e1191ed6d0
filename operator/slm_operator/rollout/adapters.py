"""Adapter rollouts, decided purely: a LoRA adapter is its own rollout unit inside the stable revision.

A new version of an adapter (a new source for its name, or a new name) is loaded into the running
engines of the stable revision beside the old one (vLLM's runtime LoRA loading: no new replica, no
engine restart), validated with the golden prompts addressed to it, given the optional traffic steps
of `spec.rollout.steps` for requests naming the adapter, then promoted or rolled back; the loser is
unloaded. Base-model changes stay full revisions (`slm_operator.api.revision`).

`decide_adapters` is the state machine, one adapter name at a time:

    (new version) → Loading → Validating → Stepping (one step per traffic step) → Stable
                       └──────────┴───────────┴──→ Failed (canary unloaded; old version keeps 100)

A version is the hash of its source, and the engine knows it as `<name>@<version>`, so two versions
of one adapter can be loaded side by side. A source that failed is not retried until the spec names
another one. `plan_capacity` derives the engine's `max_loras` / `max_lora_rank` from the adapters in
flight (old + new during a rollout) and says, naming the field, when a spec cannot fit.

Like `rollout.decide`, nothing here does I/O, reads a clock or logs. The statuses it returns are
`status.adapters` (`api.models.AdapterRolloutStatus`), from which the builder lists the versions every
engine holds and their weights (`builder.serve_config.build_adapter_routes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from slm_operator.api.models import (
    AdapterPhase,
    AdapterRolloutStatus,
    AdapterSpec,
    AdapterVersionStatus,
    GoldenPrompt,
    TrafficStep,
    ValidationSpec,
)
from slm_operator.rollout.actions import EmitEvent, LoadAdapter, SetAdapterWeights, UnloadAdapter, ValidateAdapter
from slm_operator.rollout.conditions import ConditionStatus, format_time, parse_time
from slm_operator.rollout.gate import ValidationRun, evaluate_validation
from slm_serving.config import adapter_engine_name

ADAPTER_VERSION_LENGTH = 8
SUPPORTED_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The ranks vLLM 0.32 accepts for `max_lora_rank` (`vllm.config.lora.MaxLoRARanks`)."""
DEFAULT_ADAPTER_RANK = 16
"""vLLM's default `max_lora_rank`: what an adapter is assumed to need when its spec names no rank."""


def adapter_version(source: str) -> str:
    """The version of an adapter: a short hash of its source."""
    return hashlib.sha256(source.encode()).hexdigest()[:ADAPTER_VERSION_LENGTH]


engine_adapter_name = adapter_engine_name
"""The name vLLM knows one version of an adapter by (two versions may be loaded at once)."""


# ---------------------------------------------------------------- spec and status


# ---------------------------------------------------------------- actions and observation


AdapterAction = LoadAdapter | UnloadAdapter | ValidateAdapter | SetAdapterWeights | EmitEvent


@dataclass(frozen=True)
class AdapterObservation:
    """What the shell saw of adapters this pass, keyed by `engine_adapter_name`."""

    loaded: frozenset[str] = frozenset()
    """Versions loaded in every ready engine of the stable revision."""
    load_errors: Mapping[str, str] = field(default_factory=dict)
    """Versions an engine refused to load, with its message."""
    validation: Mapping[str, ValidationRun] = field(default_factory=dict)
    """Finished validation runs asked for by ValidateAdapter."""


@dataclass(frozen=True)
class AdapterDecision:
    statuses: tuple[AdapterRolloutStatus, ...]
    actions: tuple[AdapterAction, ...]


# ---------------------------------------------------------------- prompts and capacity


def adapter_prompts(prompts: Sequence[GoldenPrompt], name: str) -> tuple[GoldenPrompt, ...]:
    """The golden prompts that validate adapter `name`, each sent naming it: those naming it, else the
    default set (those naming no adapter)."""
    own = [p for p in prompts if p.adapter == name]
    chosen = own or [p for p in prompts if p.adapter is None]
    return tuple(p.model_copy(update={"adapter": name}) for p in chosen)


@dataclass(frozen=True)
class AdapterCapacity:
    max_loras: int
    """Adapter versions one batch may mix: every adapter, plus one per concurrent rollout."""
    max_lora_rank: int


@dataclass(frozen=True)
class CapacityError:
    field: str
    message: str


def adapter_rank(adapter: AdapterSpec) -> int:
    return adapter.rank or DEFAULT_ADAPTER_RANK


def required_capacity(adapters: Sequence[AdapterSpec], concurrent_rollouts: int) -> AdapterCapacity:
    """`max_loras` / `max_lora_rank` for `adapters` with room for `concurrent_rollouts` canary versions
    (old + new of one adapter loaded at once). The CRD bounds every rank by vLLM's largest."""
    needed_rank = max((adapter_rank(a) for a in adapters), default=0)
    rank = next((r for r in SUPPORTED_LORA_RANKS if r >= needed_rank), SUPPORTED_LORA_RANKS[-1])
    return AdapterCapacity(
        max_loras=max(1, len(adapters) + min(concurrent_rollouts, len(adapters))), max_lora_rank=rank
    )


def engine_capacity(adapters: Sequence[AdapterSpec]) -> AdapterCapacity | None:
    """What a revision's engines start with: room for every adapter's old and new version at once, so
    no adapter rollout needs a restart; None (LoRA off) without adapters."""
    return required_capacity(adapters, len(adapters)) if adapters else None


def plan_capacity(
    adapters: Sequence[AdapterSpec], concurrent_rollouts: int, limit: AdapterCapacity
) -> AdapterCapacity | CapacityError:
    """The capacity `adapters` need with `concurrent_rollouts` in flight, or why it exceeds `limit` (the
    running engines', which only a new revision changes), naming the field."""
    wanted = required_capacity(adapters, concurrent_rollouts)
    if wanted.max_lora_rank > limit.max_lora_rank:
        index, adapter = max(enumerate(adapters), key=lambda item: adapter_rank(item[1]))
        return CapacityError(
            f"spec.adapters[{index}].rank",
            f"adapter {adapter.name} of rank {adapter_rank(adapter)} needs max_lora_rank {wanted.max_lora_rank}, "
            f"the running engines have {limit.max_lora_rank}",
        )
    if wanted.max_loras > limit.max_loras:
        return CapacityError(
            "spec.adapters",
            f"{len(adapters)} adapters with {concurrent_rollouts} rolling out need max_loras {wanted.max_loras}, "
            f"the running engines have {limit.max_loras}",
        )
    return wanted


# ---------------------------------------------------------------- the state machine


def decide_adapters(
    desired: Sequence[AdapterSpec],
    prompts: Sequence[GoldenPrompt],
    validation: ValidationSpec,
    steps: Sequence[TrafficStep],
    statuses: Sequence[AdapterRolloutStatus],
    observed: AdapterObservation,
    now: datetime,
    *,
    revision: str,
    serving: Mapping[str, str] = {},
) -> AdapterDecision:
    """One pass over every adapter: the next statuses (in spec order) and what the shell must do.
    `revision`: the stable revision, whose engines hold the versions; `serving`: the source each
    adapter has in its template, which serves an adapter without a status (adopted as its stable
    version, so a rollout from there keeps it serving until the new version is promoted)."""
    previous = {s.name: s for s in statuses}
    for name, source in serving.items():
        if name not in previous:
            previous[name] = _adopted(name, source, now)
    out: list[AdapterRolloutStatus] = []
    actions: list[AdapterAction] = []
    wanted = {a.name for a in desired}
    for status in statuses:
        if status.name not in wanted:
            actions += _remove(status)
    for adapter in desired:
        step = _AdapterStep(adapter, adapter_prompts(prompts, adapter.name), validation, steps, observed, now, revision)
        status, more = step.decide(previous.get(adapter.name))
        out.append(status)
        actions += more
    return AdapterDecision(tuple(out), tuple(actions))


ADAPTERS_STABLE = "AdaptersStable"
ADAPTER_ROLLING_OUT = "AdapterRollingOut"
ADAPTER_ROLLED_BACK = "AdapterRolledBack"


@dataclass(frozen=True)
class AdaptersCondition:
    """The `AdaptersReady` condition: True when every adapter serves the version its spec names."""

    status: ConditionStatus
    reason: str
    message: str


def adapters_condition(statuses: Sequence[AdapterRolloutStatus]) -> AdaptersCondition | None:
    """`AdaptersReady` from the adapters' rollout statuses; None without adapters (no condition). A rollout
    in progress comes first (False, `AdapterRollingOut`), then a version rolled back (False,
    `AdapterRolledBack`: the spec's version is not served), else True (`AdaptersStable`)."""
    if not statuses:
        return None
    rolling = [s for s in statuses if s.phase in (AdapterPhase.LOADING, AdapterPhase.VALIDATING, AdapterPhase.STEPPING)]
    if rolling:
        return AdaptersCondition("False", ADAPTER_ROLLING_OUT, "; ".join(map(_rolling_message, rolling)))
    failed = [s for s in statuses if s.phase is AdapterPhase.FAILED]
    if failed:
        return AdaptersCondition("False", ADAPTER_ROLLED_BACK, "; ".join(map(_failed_message, failed)))
    versions = ", ".join(f"{s.name}@{s.stable.version}" for s in statuses if s.stable is not None)
    return AdaptersCondition("True", ADAPTERS_STABLE, f"every adapter serves its spec's version: {versions}")


def _rolling_message(status: AdapterRolloutStatus) -> str:
    canary = status.canary
    version = f" version {canary.version}" if canary is not None else ""
    weight = f" at {canary.weight}%" if canary is not None and status.phase is AdapterPhase.STEPPING else ""
    return f"{status.name}: {status.phase.value.lower()}{version}{weight}"


def _failed_message(status: AdapterRolloutStatus) -> str:
    source = status.failed_source
    failed = f"{source} (version {adapter_version(source)}) rolled back" if source else "rolled back"
    why = f": {status.validation.reason}" if status.validation is not None and status.validation.reason else ""
    serving = f"; version {status.stable.version} serves it" if status.stable is not None else "; nothing serves it"
    return f"{status.name}: {failed}{why}{serving}"


def _adopted(name: str, source: str, now: datetime) -> AdapterRolloutStatus:
    stable = AdapterVersionStatus(version=adapter_version(source), source=source, weight=100)
    return AdapterRolloutStatus(name=name, phase=AdapterPhase.STABLE, stable=stable, since=format_time(now))


def _remove(status: AdapterRolloutStatus) -> list[AdapterAction]:
    versions = [v for v in (status.stable, status.canary) if v is not None]
    return [
        SetAdapterWeights(status.name, ()),
        *(UnloadAdapter(status.name, v.version) for v in versions),
        EmitEvent("Normal", "AdapterRemoved", f"adapter {status.name} removed from the spec: unloaded"),
    ]


@dataclass(frozen=True)
class _AdapterStep:
    adapter: AdapterSpec
    prompts: tuple[GoldenPrompt, ...]
    validation: ValidationSpec
    steps: Sequence[TrafficStep]
    observed: AdapterObservation
    now: datetime
    revision: str

    @property
    def name(self) -> str:
        return self.adapter.name

    def decide(self, status: AdapterRolloutStatus | None) -> tuple[AdapterRolloutStatus, list[AdapterAction]]:
        source = self.adapter.source
        if status is None:
            return self._start(None, source)
        if status.canary is not None and status.canary.source != source:
            # The spec moved on during a rollout: drop this canary, then start over from the stable version.
            aborted = self._rolled_back(status, f"spec now names {source}", failed=False)
            status, actions = aborted
            if status.stable is None or status.stable.source != source:
                restarted, more = self._start(status, source)
                return restarted, actions + more
            return status, actions
        if status.canary is None:
            if status.stable is not None and status.stable.source == source:
                if status.phase is AdapterPhase.STABLE:
                    return status, []
                # Back to the serving version after a failed rollout: nothing to load, nothing to retry.
                settled = status.model_copy(update={"phase": AdapterPhase.STABLE, "failed_source": None})
                return settled, []
            if status.failed_source == source:
                return status, []
            return self._start(status, source)
        if status.phase is AdapterPhase.LOADING:
            return self._loading(status)
        if status.phase is AdapterPhase.VALIDATING:
            return self._validating(status)
        return self._stepping(status)

    def _start(
        self, status: AdapterRolloutStatus | None, source: str
    ) -> tuple[AdapterRolloutStatus, list[AdapterAction]]:
        version = adapter_version(source)
        canary = AdapterVersionStatus(version=version, source=source, weight=0)
        started = AdapterRolloutStatus(
            name=self.name,
            phase=AdapterPhase.LOADING,
            stable=status.stable if status else None,
            canary=canary,
            since=format_time(self.now),
        )
        return started, [
            LoadAdapter(self.name, version, source),
            EmitEvent("Normal", "AdapterLoading", f"adapter {self.name}: loading version {version} from {source}"),
        ]

    def _loading(self, status: AdapterRolloutStatus) -> tuple[AdapterRolloutStatus, list[AdapterAction]]:
        assert status.canary is not None
        key = engine_adapter_name(self.name, status.canary.version)
        error = self.observed.load_errors.get(key)
        if error is not None:
            return self._rolled_back(status, f"load failed: {error}", failed=True)
        if key not in self.observed.loaded:
            return status, [LoadAdapter(self.name, status.canary.version, status.canary.source)]
        validating = status.model_copy(update={"phase": AdapterPhase.VALIDATING, "since": format_time(self.now)})
        return validating, [self._validate(validating)]

    def _validate(self, status: AdapterRolloutStatus) -> ValidateAdapter:
        assert status.canary is not None
        baseline = status.stable.version if status.stable else None
        return ValidateAdapter(self.name, status.canary.version, baseline, self.revision, self.prompts)

    def _validating(self, status: AdapterRolloutStatus) -> tuple[AdapterRolloutStatus, list[AdapterAction]]:
        assert status.canary is not None
        run = self.observed.validation.get(engine_adapter_name(self.name, status.canary.version))
        if run is None:  # level-triggered: asked again until a run comes back (a probe may be lost)
            return status, [self._validate(status)]
        spec = self.validation.model_copy(update={"prompts": list(self.prompts)})
        result = evaluate_validation(spec, run, format_time(self.now))
        status = status.model_copy(update={"validation": result})
        if not result.passed:
            return self._rolled_back(status, f"golden prompts failed: {result.reason}", failed=True)
        if status.stable is None or not self.steps:
            return self._promoted(status)
        return self._at_step(status, 0)

    def _stepping(self, status: AdapterRolloutStatus) -> tuple[AdapterRolloutStatus, list[AdapterAction]]:
        held = self.now - parse_time(status.since)
        if held < timedelta(seconds=self.steps[status.step].pause_seconds):
            return status, []
        if status.step + 1 < len(self.steps):
            return self._at_step(status, status.step + 1)
        return self._promoted(status)

    def _at_step(self, status: AdapterRolloutStatus, index: int) -> tuple[AdapterRolloutStatus, list[AdapterAction]]:
        assert status.canary is not None and status.stable is not None
        weight = min(self.steps[index].weight, 100)
        canary = status.canary.model_copy(update={"weight": weight})
        stable = status.stable.model_copy(update={"weight": 100 - weight})
        stepping = status.model_copy(
            update={
                "phase": AdapterPhase.STEPPING,
                "step": index,
                "since": format_time(self.now),
                "canary": canary,
                "stable": stable,
            }
        )
        return stepping, [
            SetAdapterWeights(self.name, _weights(stable, canary)),
            EmitEvent("Normal", "AdapterStep", f"adapter {self.name}: version {canary.version} at {weight}%"),
        ]

    def _promoted(self, status: AdapterRolloutStatus) -> tuple[AdapterRolloutStatus, list[AdapterAction]]:
        assert status.canary is not None
        stable = status.canary.model_copy(update={"weight": 100})
        actions: list[AdapterAction] = [SetAdapterWeights(self.name, _weights(stable, None))]
        if status.stable is not None:
            actions.append(UnloadAdapter(self.name, status.stable.version))
        actions.append(
            EmitEvent("Normal", "AdapterPromoted", f"adapter {self.name}: version {stable.version} serves 100%")
        )
        promoted = status.model_copy(
            update={
                "phase": AdapterPhase.STABLE,
                "stable": stable,
                "canary": None,
                "step": 0,
                "since": format_time(self.now),
            }
        )
        return promoted, actions

    def _rolled_back(
        self, status: AdapterRolloutStatus, why: str, *, failed: bool
    ) -> tuple[AdapterRolloutStatus, list[AdapterAction]]:
        assert status.canary is not None
        canary = status.canary
        stable = status.stable.model_copy(update={"weight": 100}) if status.stable else None
        actions: list[AdapterAction] = [
            SetAdapterWeights(self.name, _weights(stable, None)),
            UnloadAdapter(self.name, canary.version),
            EmitEvent(
                "Warning" if failed else "Normal",
                "AdapterRolledBack" if failed else "AdapterRolloutSuperseded",
                f"adapter {self.name}: version {canary.version} unloaded ({why})",
            ),
        ]
        rolled_back = status.model_copy(
            update={
                "phase": AdapterPhase.FAILED if failed else (AdapterPhase.STABLE if stable else AdapterPhase.FAILED),
                "stable": stable,
                "canary": None,
                "step": 0,
                "since": format_time(self.now),
                "failed_source": canary.source if failed else status.failed_source,
            }
        )
        return rolled_back, actions


def _weights(stable: AdapterVersionStatus | None, canary: AdapterVersionStatus | None) -> tuple[tuple[str, int], ...]:
    return tuple((v.version, v.weight) for v in (stable, canary) if v is not None)
