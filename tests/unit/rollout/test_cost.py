"""Cost per million output tokens and `maxCostRatio` (`rollout.cost`), from fixed figures; then the
state machine rolling back a correct canary that costs twice as much per token."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from slm_operator.api.models import CostSpec, Phase, RevisionStatus, RevisionTemplate
from slm_operator.rollout.cost import Prices, StepCost, build_cost_comparison, judge_cost
from slm_operator.rollout.live import LiveSamples, RevisionSamples
from tests.unit.rollout.helpers import REV, FakeShell, spec

SINCE = "2026-11-01T12:00:00Z"
PRICES = Prices(gpu_hour={"NVIDIA-L4": 0.8, "*": 2.0}, cpu_hour=0.04)


def revision(
    name: str, *, replicas: int = 1, gpus: int = 1, accelerator: str | None = "NVIDIA-L4", cpu: str = "4"
) -> RevisionStatus:
    template = RevisionTemplate.model_validate(
        {"model": {"source": "tiny://good"}, "gpusPerReplica": gpus, "acceleratorType": accelerator, "cpu": cpu}
    )
    role = "canary" if name == "can" else "stable"
    return RevisionStatus(name=name, role=role, weight=0, template=template, ready_replicas=replicas)


def samples(requests: int, tokens_per_request: int = 10) -> RevisionSamples:
    return RevisionSamples(
        requests=requests, prompt_tokens=5 * requests, completion_tokens=tokens_per_request * requests
    )


@dataclass(frozen=True)
class Row:
    weight: int
    canary: RevisionStatus
    canary_samples: RevisionSamples
    stable_samples: RevisionSamples
    outcome: str
    ratio: float | None
    stable: RevisionStatus | None = None
    """None: one replica of one L4."""
    allowed: float | None = 1.5


CAN, S = revision("can"), samples
ROWS = {
    # An identical canary reads 1.0 at any weight, though its plain cost per token is 4x (1/4x) the stable's.
    "identical at 20 %": Row(20, CAN, S(40), S(160), "Pass", 1.0),
    "identical at 50 %": Row(50, CAN, S(100), S(100), "Pass", 1.0),
    "identical at 80 %": Row(80, CAN, S(160), S(40), "Pass", 1.0),
    "twice the GPUs per replica": Row(20, revision("can", gpus=2), S(40), S(160), "Fail", 2.0),
    "twice the replicas, same share": Row(50, revision("can", replicas=2), S(100), S(100), "Fail", 2.0),
    "half the tokens per answer": Row(20, CAN, S(40, 5), S(160), "Fail", 2.0),
    "dearer accelerator": Row(20, revision("can", accelerator="NVIDIA-H100"), S(40), S(160), "Fail", 2.5),
    "within the allowed ratio": Row(20, revision("can", gpus=2), S(40, 15), S(160), "Pass", 1.333),
    "no maxCostRatio": Row(20, revision("can", gpus=2), S(40), S(160), "NotCompared", 2.0, allowed=None),
    "too few canary requests": Row(20, revision("can", gpus=2), S(19), S(160), "Inconclusive", None),
    "no stable traffic (100 %)": Row(100, CAN, S(200), S(0), "NotCompared", None),
    "CPU: cores are the units": Row(
        20, revision("can", gpus=0, cpu="8"), S(40), S(160), "Fail", 2.0, stable=revision("sta", gpus=0, cpu="4000m")
    ),
}


@pytest.mark.parametrize("name", ROWS)
def test_cost_verdict(name: str) -> None:
    row = ROWS[name]
    step = StepCost(
        canary=row.canary,
        stable=row.stable or revision("sta"),
        live=LiveSamples("can", row.canary_samples, row.stable_samples),
        step=0,
        weight=row.weight,
        since=SINCE,
        now="2026-11-01T12:01:00Z",
    )
    result = build_cost_comparison(
        None, step, spec=CostSpec(), max_cost_ratio=row.allowed, prices=PRICES, min_requests=20
    )
    assert (result.outcome, result.ratio) == (row.outcome, row.ratio), result.reason
    assert [c.role for c in result.revisions] == ["canary", "stable"]


def test_figures_of_one_revision() -> None:
    """1 replica x 2 L4 GPUs x 60 s at 0.8 per GPU-hour = 0.02666...; 400 output tokens."""
    step = StepCost(
        revision("can", gpus=2), revision("sta"), LiveSamples("can", samples(40), samples(160)), 0, 20, SINCE,
        "2026-11-01T12:01:00Z",
    )  # fmt: skip
    canary = build_cost_comparison(
        None, step, spec=CostSpec(), max_cost_ratio=None, prices=PRICES, min_requests=1
    ).revisions[0]
    assert (canary.accelerator, canary.units_per_replica, canary.unit_hour_price) == ("NVIDIA-L4", 2.0, 0.8)
    assert (canary.accelerator_seconds, canary.completion_tokens, canary.prompt_tokens) == (120.0, 400, 200)
    assert canary.cost == pytest.approx(0.026667, abs=1e-6)
    assert canary.cost_per_million_output_tokens == pytest.approx(66.6667, abs=1e-4)


def test_prices_spec_overrides_then_accelerator_table_then_any() -> None:
    assert PRICES.unit_price(revision("x", accelerator="NVIDIA-L4"), CostSpec()) == ("NVIDIA-L4", 1.0, 0.8)
    assert PRICES.unit_price(revision("x", accelerator="NVIDIA-T4"), CostSpec()) == ("NVIDIA-T4", 1.0, 2.0)
    assert PRICES.unit_price(revision("x", accelerator=None), CostSpec()) == ("gpu", 1.0, 2.0)
    assert PRICES.unit_price(revision("x"), CostSpec(gpu_hour_price=1.1)) == ("NVIDIA-L4", 1.0, 1.1)
    assert PRICES.unit_price(revision("x", gpus=0, cpu="500m"), CostSpec()) == ("cpu", 0.5, 0.04)
    assert PRICES.unit_price(revision("x", gpus=0), CostSpec(cpu_hour_price=0.1)) == ("cpu", 4.0, 0.1)


def test_accelerator_seconds_accrue_pass_by_pass_within_a_step_and_restart_with_the_next() -> None:
    live = LiveSamples("can", samples(40), samples(160))

    def at(now: str, replicas: int, step: int = 0, since: str = SINCE) -> StepCost:
        return StepCost(revision("can", replicas=replicas), revision("sta"), live, step, 20, since, now)

    def accrue(previous: object, step: StepCost) -> object:
        return build_cost_comparison(
            previous,  # type: ignore[arg-type]
            step,
            spec=CostSpec(),
            max_cost_ratio=None,
            prices=PRICES,
            min_requests=1,
        )

    first = accrue(None, at("2026-11-01T12:00:10Z", 1))
    second = accrue(first, at("2026-11-01T12:00:30Z", 3))  # 3 replicas for the last 20 s
    assert [c.accelerator_seconds for c in second.revisions] == [10 + 60, 30]  # type: ignore[attr-defined]
    next_step = accrue(second, at("2026-11-01T12:00:40Z", 1, step=1, since="2026-11-01T12:00:35Z"))
    assert [c.accelerator_seconds for c in next_step.revisions] == [5, 5]  # type: ignore[attr-defined]


def test_judge_needs_canary_tokens() -> None:
    live = LiveSamples("can", RevisionSamples(requests=50), samples(50))
    canary = build_cost_comparison(
        None,
        StepCost(revision("can"), revision("sta"), live, 0, 50, SINCE, SINCE),
        spec=CostSpec(),
        max_cost_ratio=1.5,
        prices=PRICES,
        min_requests=20,
    )
    assert canary.outcome == "NotCompared"
    assert judge_cost(canary.revisions[0], canary.revisions[1], 1.5, 20)[0] == "NotCompared"


def test_a_correct_canary_that_costs_twice_as_much_per_token_is_rolled_back_at_its_first_step() -> None:
    """The state machine end to end (FakeShell: every revision 1 replica, the canary's traffic as good
    as the stable's): version b of examples/tiny.yaml on 2 CPUs per replica instead of 1."""
    stable, dearer, same = spec("a"), spec("b"), spec("b")
    for each in (stable, dearer, same):
        each.rollout.validation.max_cost_ratio = 1.5
    dearer.resources.cpu = "2"
    status = FakeShell(specs={1: stable, 2: dearer}).run(12, {4: 2})
    assert status.phase == Phase.DEGRADED and status.stable_revision == REV["a"] and status.canary_revision is None
    assert status.last_cost is not None and status.last_cost.outcome == "Fail"
    assert status.last_cost.ratio == 2.0 and "maxCostRatio 1.5" in status.last_cost.reason
    assert any("rolled back" in c.message and "maxCostRatio" in c.message for c in status.conditions)

    same_cost = FakeShell(specs={1: stable, 2: same}).run(12, {4: 2})
    assert same_cost.stable_revision == REV["b"], same_cost.message
    assert same_cost.last_cost is not None and same_cost.last_cost.ratio == 1.0
