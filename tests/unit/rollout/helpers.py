"""Shared builders for the rollout state-machine tests: specs, observations, a fake shell."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from slm_operator.api.models import SLMDeploymentSpec, SLMDeploymentStatus
from slm_operator.api.revision import compute_revision
from slm_operator.rollout.actions import ApplyRevisions, EmitEvent, ObserveMetrics, RunValidation
from slm_operator.rollout.decide import Decision, Observation, RolloutSettings, decide
from slm_operator.rollout.gate import PromptOutcome, ValidationRun
from slm_operator.rollout.live import LiveSamples, RevisionSamples
from tests.conftest import EXAMPLES

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = RolloutSettings(min_step_requests=20)
CAPITALS = {"france": "Paris", "japan": "Tokyo", "peru": "Lima", "norway": "Oslo"}
SOURCES = {"a": "tiny://good", "b": "tiny://bad", "c": "file:///models/c"}


def spec(version: str = "a", **rollout: Any) -> SLMDeploymentSpec:
    """examples/tiny.yaml (steps 20 % for 10 s, then 100 %), its model source picked by `version`."""
    document = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())["spec"]
    document["model"]["source"] = SOURCES[version]
    document["rollout"].update(rollout)
    return SLMDeploymentSpec.model_validate(document)


REV = {version: compute_revision(spec(version)) for version in SOURCES}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def answers(revision: str, wrong: int = 0, latency: float = 100.0) -> tuple[PromptOutcome, ...]:
    return tuple(
        PromptOutcome(name, answer="Madrid" if i < wrong else city, latency_ms=latency, ttft_ms=latency / 5)
        for i, (name, city) in enumerate(CAPITALS.items())
    )


def validation(canary: str, stable: str | None, wrong: int = 0, latency: float = 100.0) -> ValidationRun:
    return ValidationRun(canary, answers(canary, wrong, latency), stable, answers(stable) if stable is not None else ())


def traffic(
    requests: int = 100, errors: int = 0, latency: float = 100.0, ttft: float | None = None, tokens: int = 8
) -> RevisionSamples:
    """Fixed samples: successes' latencies evenly spread over 0.8-1.2x `latency`, median `latency` (TTFT:
    the same around `ttft`, else latency / 5); `tokens` generated (and 20 prompt tokens) per success."""
    count = requests - errors
    spread = [0.8 + 0.4 * i / max(1, count - 1) for i in range(count)]
    first = latency / 5 if ttft is None else ttft
    return RevisionSamples(
        requests=requests,
        errors=errors,
        latency_ms=tuple(latency * f for f in spread),
        ttft_ms=tuple(first * f for f in spread),
        prompt_tokens=20 * count,
        completion_tokens=tokens * count,
    )


GOOD_TRAFFIC = traffic()


def live(canary: str, samples: RevisionSamples = GOOD_TRAFFIC) -> LiveSamples:
    return LiveSamples(canary, samples, GOOD_TRAFFIC)


def observe(status: SLMDeploymentStatus | None, **overrides: Any) -> Observation:
    """Everything in `status` runs with one replica and the router has its weights, unless overridden."""
    names = frozenset(r.name for r in status.revisions) if status is not None else frozenset()
    base = Observation(running=names, ready_replicas=dict.fromkeys(names, 1), routes_settled=True)
    return replace(base, **overrides)


def weights(status: SLMDeploymentStatus) -> tuple[tuple[str, int], ...]:
    return tuple((r.name, r.weight) for r in status.revisions)


def conditions(status: SLMDeploymentStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def events(decision: Decision) -> list[str]:
    return [a.reason for a in decision.actions if isinstance(a, EmitEvent)]


@dataclass
class FakeShell:
    """Stands in for the kopf timer and Ray Serve (which cannot run in a unit test): Serve starts
    revisions at once and the router takes weights at once; golden prompts and live metrics come
    from the `canary_*` knobs. Like the real shell, it converges Serve to `status.revisions` on
    every pass. `crash_at` loses one pass: before its status is persisted, or (`crash_after_persist`)
    after persisting but before any of its actions run."""

    specs: dict[int, SLMDeploymentSpec]
    """Spec per generation (`run(switch_at=...)` says from which pass each generation applies)."""
    canary_wrong: int = 0
    canary_latency: float = 100.0
    live_latency: float | None = None
    """Canary's typical latency under user traffic; `canary_latency` when None."""
    crash_at: int | None = None
    crash_after_persist: bool = False
    status: SLMDeploymentStatus | None = None
    serving: dict[str, int] = field(default_factory=dict)
    pending_validation: RunValidation | None = None
    pending_metrics: ObserveMetrics | None = None
    reasons: list[str] = field(default_factory=list)

    def run(self, passes: int, switch_at: dict[int, int] | None = None) -> SLMDeploymentStatus:
        """`switch_at` maps a pass number to the generation whose spec applies from then on."""
        generation = min(self.specs)
        for index in range(passes):
            generation = (switch_at or {}).get(index, generation)
            self._pass(index, generation)
        assert self.status is not None
        return self.status

    def _pass(self, index: int, generation: int) -> None:
        now = at(5 * index)
        if self.status is not None:  # level-triggered convergence of Serve to the status
            self.serving = dict(weights(self.status))
        settled = self.status is not None and tuple(self.serving.items()) == weights(self.status)
        observation = Observation(
            running=frozenset(self.serving),
            ready_replicas=dict.fromkeys(self.serving, 1),
            routes_settled=settled,
            validation=self._validation(),
            live=self._live(),
        )
        decision = decide(
            self.specs[generation], self.status, observation, generation=generation, now=now, settings=SETTINGS
        )
        if index == self.crash_at and not self.crash_after_persist:
            return
        self.status = decision.status
        if index == self.crash_at:
            return
        for action in decision.actions:
            if isinstance(action, ApplyRevisions):
                self.serving = dict(action.weights)
            elif isinstance(action, RunValidation):
                self.pending_validation = action
            elif isinstance(action, ObserveMetrics):
                self.pending_metrics = action
            elif isinstance(action, EmitEvent):
                self.reasons.append(action.reason)

    def _validation(self) -> ValidationRun | None:
        asked, self.pending_validation = self.pending_validation, None
        if asked is None:
            return None
        is_canary = asked.baseline is not None
        return validation(
            asked.revision,
            asked.baseline,
            wrong=self.canary_wrong if is_canary else 0,
            latency=self.canary_latency if is_canary else 100.0,
        )

    def _live(self) -> LiveSamples | None:
        asked, self.pending_metrics = self.pending_metrics, None
        if asked is None:
            return None
        latency = self.canary_latency if self.live_latency is None else self.live_latency
        return live(asked.canary, traffic(latency=latency))


def outcome(status: SLMDeploymentStatus) -> tuple[object, ...]:
    """What a finished rollout is judged by (times left out: a lost pass shifts them)."""
    return (
        status.phase,
        status.stable_revision,
        status.canary_revision,
        weights(status),
        conditions(status),
        status.last_validation.passed if status.last_validation else None,
    )
