"""`slm plan`: what SLMDeployments would cost and attain on a simulated fleet, ours beside the baselines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from slm_operator.api.models import SLMDeployment
from slm_operator.sim.engine import percentile
from slm_operator.sim.fleet import FleetResult, Policy, Scenario, SimDeployment, Strategy, simulate, unit_params
from slm_operator.sim.profiles import profile_for
from slm_operator.sim.scenarios import capacity_rps, full_batch_latency_s
from slm_operator.sim.workload import Load, Trace, Traffic, random_bursts

POLICY_LABELS = {
    Policy.QUEUE: "queue depth (spec)",
    Policy.SERVE_DEFAULT: "Ray Serve default",
    Policy.KEDA: "KEDA on vllm waiting",
}
STRATEGY_LABELS = {
    Strategy.OURS: "canary (ours)",
    Strategy.BLUE_GREEN: "KubeRay blue/green",
    Strategy.INCREMENTAL: "KubeRay incremental",
}


@dataclass(frozen=True)
class PolicyRow:
    policy: str
    slo_attainment: float
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    ttft_p99_s: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    latency_p99_s: float | None
    gpu_hours: float
    cost_usd: float
    cost_per_million_tokens_usd: float | None
    peak_gpus: int
    failed: int
    failed_at_zero: int


@dataclass(frozen=True)
class RolloutRow:
    strategy: str
    peak_gpus: int
    """Most GPUs a deployment held during its rollout."""
    gpus_before: int
    extra_gpu_hours: float
    """GPU-hours of the run with the rollout minus the run without."""
    minutes: float | None
    slo_attainment: float


@dataclass(frozen=True)
class Plan:
    deployments: list[dict[str, Any]]
    hours: float
    policies: list[PolicyRow]
    rollouts: list[RolloutRow]


def default_traffic(deployment: SimDeployment, hours: float, seed: int, rps: float | None) -> Traffic:
    """Without a trace: a daily mean of `rps`, else half of maxReplicas busy, a 1.6x afternoon peak, ~3 bursts a day."""
    import random

    params = unit_params(deployment)
    mean = rps if rps is not None else 0.5 * deployment.spec.autoscaling.max_replicas * capacity_rps(params)
    return Traffic(mean_rps=mean, bursts=random_bursts(random.Random(seed), per_day=3, hours=hours))


def sim_deployments(
    objects: Sequence[SLMDeployment],
    gpu_type: str | None,
    trace: Path | None,
    hours: float,
    seed: int,
    rps: float | None,
) -> tuple[SimDeployment, ...]:
    loaded = Trace.from_csv(trace) if trace is not None else None
    result = []
    for index, obj in enumerate(objects):
        name = str(obj.metadata.get("name", f"deployment-{index}"))
        profile = profile_for(obj.spec, gpu_type)
        probe = SimDeployment(name, obj.spec, loaded or Traffic(1.0), profile)
        load: Load = loaded or default_traffic(probe, hours, seed + index, rps)
        params = unit_params(dataclasses_replace(probe, load))
        result.append(SimDeployment(name, obj.spec, load, profile, 1.0, 1.0 + 1.5 * full_batch_latency_s(params)))
    return tuple(result)


def dataclasses_replace(deployment: SimDeployment, load: Load) -> SimDeployment:
    return SimDeployment(deployment.name, deployment.spec, load, deployment.profile)


def policy_row(policy: Policy, result: FleetResult, price: float) -> PolicyRow:
    ttft: np.ndarray = np.sum([d.ttft_hist for d in result.deployments], axis=0)
    latency: np.ndarray = np.sum([d.latency_hist for d in result.deployments], axis=0)
    tokens = sum(d.tokens for d in result.deployments)
    cost = result.gpu_hours * price
    return PolicyRow(
        policy=POLICY_LABELS[policy],
        slo_attainment=result.slo_attainment,
        ttft_p50_s=percentile(ttft, 50),
        ttft_p95_s=percentile(ttft, 95),
        ttft_p99_s=percentile(ttft, 99),
        latency_p50_s=percentile(latency, 50),
        latency_p95_s=percentile(latency, 95),
        latency_p99_s=percentile(latency, 99),
        gpu_hours=result.gpu_hours,
        cost_usd=cost,
        cost_per_million_tokens_usd=cost / tokens * 1e6 if tokens else None,
        peak_gpus=result.peak_gpus,
        failed=round(result.failed),
        failed_at_zero=round(sum(d.failed_cold for d in result.deployments)),
    )


def build_plan(
    objects: Sequence[SLMDeployment],
    *,
    hours: float = 24.0,
    gpu_type: str | None = None,
    trace: Path | None = None,
    rps: float | None = None,
    seed: int = 0,
) -> Plan:
    """Simulate `objects` for `hours` under each autoscaling policy, then one rollout of each at half time
    under each upgrade strategy. The GPU pool has room for every deployment at twice its budget."""
    deployments = sim_deployments(objects, gpu_type, trace, hours, seed, rps)
    gpus = sum(
        2
        * (d.spec.autoscaling.max_replicas + d.spec.rollout.max_surge_replicas)
        * max(1, d.spec.resources.gpus_per_replica)
        for d in deployments
    )
    base = Scenario(deployments, gpus, hours, seed=seed)
    price = sum(d.profile.gpu_hour_usd for d in deployments) / len(deployments)
    runs = {policy: simulate(Scenario(deployments, gpus, hours, seed=seed, policy=policy)) for policy in POLICY_LABELS}
    policies = [policy_row(policy, result, price) for policy, result in runs.items()]
    schedule = tuple((index, hours * 3600 / 2) for index in range(len(deployments)))
    rollouts = []
    for strategy, label in STRATEGY_LABELS.items():
        result = simulate(Scenario(base.deployments, gpus, hours, seed=seed, strategy=strategy, rollouts=schedule))
        rolls = [d.rollout for d in result.deployments if d.rollout is not None]
        durations = [r.finished_s - r.started_s for r in rolls if r.finished_s is not None]
        rollouts.append(
            RolloutRow(
                strategy=label,
                peak_gpus=max(r.peak_gpus for r in rolls),
                gpus_before=max(r.gpus_before for r in rolls),
                extra_gpu_hours=result.gpu_hours - runs[Policy.QUEUE].gpu_hours,
                minutes=max(durations) / 60 if len(durations) == len(rolls) else None,
                slo_attainment=result.slo_attainment,
            )
        )
    described = [
        {
            "name": d.name,
            "profile": d.profile.name,
            "mean_rps": d.load.mean_rps if isinstance(d.load, Traffic) else None,
            "slo_ttft_s": d.slo_ttft_s,
            "slo_latency_s": round(d.slo_latency_s, 2),
        }
        for d in deployments
    ]
    return Plan(described, hours, policies, rollouts)


def plan_json(plan: Plan) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if isinstance(value, float):
            return None if math.isnan(value) else round(value, 4)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(asdict(plan))  # type: ignore[no-any-return]


def _s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def print_plan(plan: Plan, console: Console) -> None:
    for d in plan.deployments:
        load = f"{d['mean_rps']:.1f} req/s mean" if d["mean_rps"] is not None else "trace"
        console.print(
            f"[bold]{d['name']}[/bold]: {d['profile']}, {load}; SLO: TTFT ≤ {_s(d['slo_ttft_s'])}, "
            f"latency ≤ {_s(d['slo_latency_s'])}"
        )
    table = Table(title=f"Autoscaling over {plan.hours:g} h (simulated)")
    for column in (
        "policy",
        "SLO met",
        "TTFT p50/p95/p99",
        "latency p50/p95/p99",
        "GPU-h",
        "$/M tokens",
        "peak GPUs",
        "failed (at zero)",
    ):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for row in plan.policies:
        table.add_row(
            row.policy,
            f"{row.slo_attainment:.2%}",
            " / ".join(_s(v) for v in (row.ttft_p50_s, row.ttft_p95_s, row.ttft_p99_s)),
            " / ".join(_s(v) for v in (row.latency_p50_s, row.latency_p95_s, row.latency_p99_s)),
            f"{row.gpu_hours:.1f}",
            "-" if row.cost_per_million_tokens_usd is None else f"{row.cost_per_million_tokens_usd:.3f}",
            str(row.peak_gpus),
            f"{row.failed} ({row.failed_at_zero})",
        )
    console.print(table)
    rollouts = Table(title="One rollout of each deployment at half time (queue-depth autoscaling)")
    for column in ("strategy", "GPUs before → peak", "extra GPU-h", "minutes", "SLO met"):
        rollouts.add_column(column, justify="left" if column == "strategy" else "right")
    for r in plan.rollouts:
        rollouts.add_row(
            r.strategy,
            f"{r.gpus_before} → {r.peak_gpus}",
            f"{r.extra_gpu_hours:+.2f}",
            "-" if r.minutes is None else f"{r.minutes:.1f}",
            f"{r.slo_attainment:.2%}",
        )
    console.print(rollouts)
