"""Cost per million output tokens of canary and stable at a traffic step, and `maxCostRatio`. Pure.

**Accrual.** A revision's accelerator-seconds are its ready replicas x units per replica x seconds,
summed pass by pass over the step (each pass's replica count held until the next); units are GPUs per
replica, or CPU cores per replica for a revision with `gpusPerReplica: 0`. Its tokens are the
router's exact counts since the step began (`LiveSamples`, from `slm_serving.samples`). Cost is
accelerator-seconds / 3600 x the price of a unit-hour: `spec.cost`, else the operator's table per
`acceleratorType` (`*` for any other; chart values `cost.gpuHourPrices`, `cost.cpuHourPrice`).
Status shows each revision's plain cost per million output tokens: what its replicas cost over what
they generated. Tokens count from the step's first read of the router (a pass after the step began),
accelerator-seconds from the step's start, so the plain figures read a little high early in a step;
the ratio, which sets the two revisions side by side over the same span, does not move.

**The gate normalises by traffic share.** At a 20 % step with one replica each, a canary exactly as
good as the stable generates a quarter of the stable's tokens on the same accelerator-seconds, so
its plain cost per token is 4x the stable's (and 1/4x at 80 %): a fixed floor of replicas, not the
model, would decide. `maxCostRatio` therefore compares each revision's cost per output token *times
its share of the step's requests* — its replicas' cost per token of the whole traffic, as if each
served it all at today's replica count:

    ratio = (cost_c / tokens_c x share_c) / (cost_s / tokens_s x share_s)
          = (cost_c / cost_s) x (tokens per request_s / tokens per request_c)

So an identical canary reads 1.0 at every weight; one that needs twice the GPUs per replica, or that
the autoscaler gave twice the replicas at the same share, reads 2.0; one that answers with half the
tokens per request costs the same and reads 2.0 per token. The known bias: when the stable has been
scaled above the canary for its larger share, the canary reads cheaper than it is (lenient, never a
false rollback). The ratio is a point estimate, judged once the canary has the step's minimum
requests; without stable traffic (the 100 % step) it is NotCompared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from kubernetes.utils.quantity import parse_quantity

from slm_operator.api.models import CostComparison, CostSpec, RevisionCost, RevisionStatus
from slm_operator.rollout.conditions import parse_time
from slm_operator.rollout.live import LiveSamples, RevisionSamples

Role = Literal["stable", "canary"]
ANY_ACCELERATOR = "*"
DEFAULT_GPU_HOUR_PRICES: Mapping[str, float] = {
    "NVIDIA-L4": 0.80,
    "NVIDIA-A100-SXM4-40GB": 3.00,
    "NVIDIA-H100-80GB-HBM3": 4.00,
    ANY_ACCELERATOR: 2.00,
}
"""On-demand prices per GPU-hour (estimates: list prices vary by cloud and region); `slm plan`'s
profiles (`sim.profiles`) use them too. Set your own."""
DEFAULT_CPU_HOUR_PRICE = 0.04
"""Per CPU-core-hour."""


@dataclass(frozen=True)
class Prices:
    """The operator's prices (chart-wide); a SLMDeployment's `spec.cost` overrides them."""

    gpu_hour: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_GPU_HOUR_PRICES))
    """Per acceleratorType; `*` for any other (and for revisions that name none)."""
    cpu_hour: float = DEFAULT_CPU_HOUR_PRICE

    def unit_price(self, revision: RevisionStatus, spec: CostSpec) -> tuple[str, float, float]:
        """(what is paid for, units per replica, price per unit-hour) of one revision."""
        template = revision.template
        if template.gpus_per_replica == 0:
            cores = float(parse_quantity(template.cpu))  # type: ignore[no-untyped-call]
            price = spec.cpu_hour_price if spec.cpu_hour_price is not None else self.cpu_hour
            return "cpu", cores, price
        accelerator = template.accelerator_type or "gpu"
        if spec.gpu_hour_price is not None:
            price = spec.gpu_hour_price
        else:
            price = self.gpu_hour.get(
                template.accelerator_type or ANY_ACCELERATOR, self.gpu_hour.get(ANY_ACCELERATOR, 0)
            )
        return accelerator, float(template.gpus_per_replica), price


@dataclass(frozen=True)
class StepCost:
    """Which step the figures are for, and this pass's time."""

    canary: RevisionStatus
    stable: RevisionStatus
    live: LiveSamples
    step: int
    weight: int
    since: str
    now: str


def build_cost_comparison(
    previous: CostComparison | None,
    step: StepCost,
    *,
    spec: CostSpec,
    max_cost_ratio: float | None,
    prices: Prices,
    min_requests: int,
) -> CostComparison:
    """This pass's figures: `previous`'s accelerator-seconds (when it is this step's) plus today's
    replicas held since its time (since the step began, when it is not), this step's tokens, and the verdict."""
    if previous is not None and (previous.revision, previous.step, previous.since) == (
        step.canary.name,
        step.step,
        step.since,
    ):
        start = previous.time
        before = {c.revision: c.accelerator_seconds for c in previous.revisions}
    else:
        start, before = step.since, {}
    elapsed = max(0.0, (parse_time(step.now) - parse_time(start)).total_seconds())
    costs = [
        _revision_cost(revision, samples, role, before.get(revision.name, 0.0), elapsed, spec, prices)
        for revision, samples, role in _sides(step)
    ]
    outcome, ratio, reason = judge_cost(costs[0], costs[1], max_cost_ratio, min_requests)
    return CostComparison(
        revision=step.canary.name,
        step=step.step,
        weight=step.weight,
        since=step.since,
        time=step.now,
        outcome=outcome,
        ratio=round(ratio, 3) if ratio is not None else None,
        allowed=max_cost_ratio,
        reason=reason,
        revisions=costs,
    )


def _sides(step: StepCost) -> tuple[tuple[RevisionStatus, RevisionSamples, Role], ...]:
    return (step.canary, step.live.canary, "canary"), (step.stable, step.live.stable, "stable")


def _revision_cost(
    revision: RevisionStatus,
    samples: RevisionSamples,
    role: Role,
    accrued: float,
    elapsed: float,
    spec: CostSpec,
    prices: Prices,
) -> RevisionCost:
    accelerator, units, price = prices.unit_price(revision, spec)
    seconds = accrued + revision.ready_replicas * units * elapsed
    cost = seconds / 3600 * price
    per_million = cost / samples.completion_tokens * 1e6 if samples.completion_tokens else None
    return RevisionCost(
        revision=revision.name,
        role=role,
        accelerator=accelerator,
        units_per_replica=units,
        unit_hour_price=price,
        accelerator_seconds=round(seconds, 3),
        requests=samples.requests,
        prompt_tokens=samples.prompt_tokens,
        completion_tokens=samples.completion_tokens,
        cost=round(cost, 6),
        cost_per_million_output_tokens=round(per_million, 4) if per_million is not None else None,
    )


Verdict = Literal["Pass", "Fail", "Inconclusive", "NotCompared"]


def judge_cost(
    canary: RevisionCost, stable: RevisionCost, allowed: float | None, min_requests: int
) -> tuple[Verdict, float | None, str]:
    """(verdict, share-normalised cost ratio, reason) of canary against stable."""
    minimum = max(1, min_requests)
    if canary.requests < minimum:
        return "Inconclusive", None, f"cost: {canary.requests} of {minimum} canary requests so far"
    if stable.requests < minimum or not stable.completion_tokens or not stable.cost:
        return "NotCompared", None, f"cost not compared: {stable.requests} stable requests (need {minimum})"
    if not canary.completion_tokens:
        return "NotCompared", None, "cost not compared: the router counted no output tokens of the canary"
    per_request = (canary.completion_tokens / canary.requests, stable.completion_tokens / stable.requests)
    ratio = canary.cost / stable.cost * per_request[1] / per_request[0]
    said = (
        f"cost per output token at equal traffic share {ratio:.2f}x the stable's "
        f"(plain: {_per_million(canary)} vs {_per_million(stable)} per million output tokens)"
    )
    if allowed is None:
        return "NotCompared", ratio, f"{said}; no maxCostRatio"
    if ratio > allowed:
        return "Fail", ratio, f"{said} > maxCostRatio {allowed:g}"
    return "Pass", ratio, f"{said}: within maxCostRatio {allowed:g}"


def _per_million(cost: RevisionCost) -> str:
    figure = cost.cost_per_million_output_tokens
    return f"{figure:.4g}" if figure is not None else "n/a"
