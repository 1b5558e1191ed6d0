"""The adapter rollout state machine and capacity plan (`slm_operator.rollout.adapters`), pass by pass."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from slm_operator.api.models import AdapterSpec, Expectation, GoldenPrompt, TrafficStep, ValidationSpec
from slm_operator.rollout.actions import EmitEvent
from slm_operator.rollout.adapters import (
    AdapterCapacity,
    AdapterDecision,
    AdapterObservation,
    AdapterPhase,
    AdapterRolloutStatus,
    CapacityError,
    LoadAdapter,
    SetAdapterWeights,
    UnloadAdapter,
    ValidateAdapter,
    adapter_prompts,
    adapter_version,
    decide_adapters,
    engine_adapter_name,
    engine_capacity,
    plan_capacity,
    required_capacity,
)
from slm_operator.rollout.gate import PromptOutcome, ValidationRun

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
V1, V2 = "tiny://lora-good", "tiny://lora-bad"
PROMPTS = (
    GoldenPrompt(name="france", prompt="What is the capital of France?", adapter="tickets",
                        expect=Expectation(contains=["Madrid"])),
    GoldenPrompt(name="default", prompt="hello", expect=Expectation(contains=["hi"])),
)  # fmt: skip
NOTHING_SEEN = AdapterObservation()
STEPS = (TrafficStep(weight=20, pause_seconds=60), TrafficStep(weight=50, pause_seconds=60))


def run(
    statuses: Sequence[AdapterRolloutStatus],
    observed: AdapterObservation = NOTHING_SEEN,
    *,
    source: str | None = V2,
    steps: Sequence[TrafficStep] = STEPS,
    at: timedelta = timedelta(0),
) -> AdapterDecision:
    desired = [AdapterSpec(name="tickets", source=source)] if source else []
    return decide_adapters(desired, PROMPTS, ValidationSpec(), steps, statuses, observed, T0 + at, revision="r1")


def stable_on_v1() -> AdapterRolloutStatus:
    first = run([], source=V1).statuses
    loaded = run(first, AdapterObservation(loaded=frozenset({key(V1)})), source=V1).statuses
    return run(loaded, answered(V1, "Madrid."), source=V1).statuses[0]


def key(source: str) -> str:
    return engine_adapter_name("tickets", adapter_version(source))


def answered(source: str, answer: str) -> AdapterObservation:
    outcome = PromptOutcome(name="france", answer=answer, latency_ms=10.0, ttft_ms=5.0)
    validation = ValidationRun(revision=key(source), outcomes=(outcome,))
    return AdapterObservation(loaded=frozenset({key(V1), key(V2)}), validation={key(source): validation})


def kinds(decision: AdapterDecision) -> list[str]:
    return [type(a).__name__ if not isinstance(a, EmitEvent) else a.reason for a in decision.actions]


def test_a_new_adapter_is_loaded_validated_and_promoted_without_steps() -> None:
    start = run([], source=V1)
    assert start.actions[0] == LoadAdapter("tickets", adapter_version(V1), V1)
    assert start.statuses[0].phase is AdapterPhase.LOADING and start.statuses[0].canary is not None
    assert start.statuses[0].canary.weight == 0
    status = stable_on_v1()
    assert status.phase is AdapterPhase.STABLE
    assert status.stable is not None and (status.stable.source, status.stable.weight) == (V1, 100)
    assert status.canary is None


def test_loading_waits_until_every_engine_has_the_version_then_asks_for_its_own_prompts() -> None:
    start = run([stable_on_v1()])
    waiting = run(start.statuses, AdapterObservation(loaded=frozenset({key(V1)})))
    assert waiting.statuses[0].phase is AdapterPhase.LOADING
    assert kinds(waiting) == ["LoadAdapter"]  # level-triggered: asked again until loaded
    loaded = run(start.statuses, AdapterObservation(loaded=frozenset({key(V1), key(V2)})))
    (validate,) = loaded.actions
    assert isinstance(validate, ValidateAdapter)
    assert validate.baseline == adapter_version(V1)
    assert [p.name for p in validate.prompts] == ["france"]


def test_a_passing_version_steps_then_promotes_and_unloads_the_old_one() -> None:
    loading = run([stable_on_v1()]).statuses
    validating = run(loading, AdapterObservation(loaded=frozenset({key(V1), key(V2)}))).statuses
    step0 = run(validating, answered(V2, "Madrid."))
    assert step0.actions[0] == SetAdapterWeights("tickets", ((adapter_version(V1), 80), (adapter_version(V2), 20)))
    held = run(step0.statuses, at=timedelta(seconds=59))
    assert held.actions == () and held.statuses == step0.statuses
    step1 = run(step0.statuses, at=timedelta(seconds=60))
    assert step1.statuses[0].step == 1 and step1.statuses[0].canary is not None
    assert step1.statuses[0].canary.weight == 50
    done = run(step1.statuses, at=timedelta(seconds=120))
    assert kinds(done) == ["SetAdapterWeights", "UnloadAdapter", "AdapterPromoted"]
    assert done.actions[1] == UnloadAdapter("tickets", adapter_version(V1))
    final = done.statuses[0]
    assert final.phase is AdapterPhase.STABLE and final.stable is not None and final.stable.source == V2


def test_a_failing_version_is_rolled_back_before_it_gets_any_traffic() -> None:
    loading = run([stable_on_v1()]).statuses
    validating = run(loading, AdapterObservation(loaded=frozenset({key(V1), key(V2)}))).statuses
    assert validating[0].canary is not None and validating[0].canary.weight == 0
    failed = run(validating, answered(V2, "Lima."))
    assert kinds(failed) == ["SetAdapterWeights", "UnloadAdapter", "AdapterRolledBack"]
    assert failed.actions[0] == SetAdapterWeights("tickets", ((adapter_version(V1), 100),))
    status = failed.statuses[0]
    assert status.phase is AdapterPhase.FAILED and status.failed_source == V2 and status.canary is None
    assert status.validation is not None and not status.validation.passed
    assert run(failed.statuses).actions == ()  # the same source is not retried
    reverted = run(failed.statuses, source=V1)
    assert reverted.actions == () and reverted.statuses[0].phase is AdapterPhase.STABLE


def test_a_load_error_rolls_back() -> None:
    loading = run([stable_on_v1()]).statuses
    failed = run(loading, AdapterObservation(loaded=frozenset({key(V1)}), load_errors={key(V2): "rank 64 > 16"}))
    assert failed.statuses[0].phase is AdapterPhase.FAILED
    assert "rank 64 > 16" in next(a.message for a in failed.actions if isinstance(a, EmitEvent))


def test_a_spec_change_mid_rollout_unloads_the_canary_and_starts_over() -> None:
    loading = run([stable_on_v1()]).statuses
    third = "pvc://adapters/tickets-v3"
    moved = run(loading, source=third)
    assert kinds(moved) == [
        "SetAdapterWeights",
        "UnloadAdapter",
        "AdapterRolloutSuperseded",
        "LoadAdapter",
        "AdapterLoading",
    ]
    assert moved.statuses[0].canary is not None and moved.statuses[0].canary.source == third
    back = run(loading, source=V1)
    assert kinds(back) == ["SetAdapterWeights", "UnloadAdapter", "AdapterRolloutSuperseded"]
    assert back.statuses[0].phase is AdapterPhase.STABLE and back.statuses[0].failed_source is None


def test_a_removed_adapter_loses_its_route_then_every_version_is_unloaded() -> None:
    loading = run([stable_on_v1()]).statuses
    removed = run(loading, source=None)
    assert removed.statuses == ()
    assert removed.actions[:3] == (
        SetAdapterWeights("tickets", ()),
        UnloadAdapter("tickets", adapter_version(V1)),
        UnloadAdapter("tickets", adapter_version(V2)),
    )


@pytest.mark.parametrize(
    ("adapter", "expected"),
    [("tickets", ["france"]), ("other", ["default"])],
)
def test_prompts_naming_an_adapter_else_the_default_set(adapter: str, expected: list[str]) -> None:
    chosen = adapter_prompts(PROMPTS, adapter)
    assert [p.name for p in chosen] == expected


def _adapters(*ranks: int | None) -> list[AdapterSpec]:
    return [AdapterSpec(name=f"a{i}", source=f"tiny://lora-{i}", rank=r) for i, r in enumerate(ranks)]


@pytest.mark.parametrize(
    ("ranks", "rollouts", "expected"),
    [
        ((8, 8), 1, AdapterCapacity(max_loras=3, max_lora_rank=8)),
        ((8, 20), 5, AdapterCapacity(max_loras=4, max_lora_rank=32)),
        ((None, None), 0, AdapterCapacity(max_loras=2, max_lora_rank=16)),
        ((300,), 1, AdapterCapacity(max_loras=2, max_lora_rank=320)),
    ],
)
def test_required_capacity(ranks: tuple[int | None, ...], rollouts: int, expected: AdapterCapacity) -> None:
    assert required_capacity(_adapters(*ranks), rollouts) == expected


def test_engines_have_room_for_every_adapter_rolling_out_and_no_lora_without_adapters() -> None:
    assert engine_capacity(_adapters(8, None, 64)) == AdapterCapacity(max_loras=6, max_lora_rank=64)
    assert engine_capacity([]) is None


@pytest.mark.parametrize(
    ("ranks", "rollouts", "limit", "expected"),
    [
        ((8, 8), 1, AdapterCapacity(3, 8), AdapterCapacity(max_loras=3, max_lora_rank=8)),
        (
            (8, 8),
            2,
            AdapterCapacity(3, 8),
            "spec.adapters: 2 adapters with 2 rolling out need max_loras 4, the running engines have 3",
        ),
        (
            (8, 64),
            0,
            AdapterCapacity(4, 16),
            "spec.adapters[1].rank: adapter a1 of rank 64 needs max_lora_rank 64, the running engines have 16",
        ),
    ],
)
def test_plan_capacity_names_the_field_that_does_not_fit(
    ranks: tuple[int, ...], rollouts: int, limit: AdapterCapacity, expected: AdapterCapacity | str
) -> None:
    plan = plan_capacity(_adapters(*ranks), rollouts, limit)
    if isinstance(expected, AdapterCapacity):
        assert plan == expected
    else:
        assert isinstance(plan, CapacityError)
        assert f"{plan.field}: {plan.message}" == expected


def test_validation_is_asked_again_until_a_run_comes_back() -> None:
    loading = run([stable_on_v1()]).statuses
    validating = run(loading, AdapterObservation(loaded=frozenset({key(V1), key(V2)})))
    again = run(validating.statuses, AdapterObservation(loaded=frozenset({key(V1), key(V2)})))
    assert again.statuses == validating.statuses
    assert again.actions == validating.actions and isinstance(again.actions[0], ValidateAdapter)
