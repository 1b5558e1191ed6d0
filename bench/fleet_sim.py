"""Fleet benchmark (simulated): 100 SLMDeployments on 200 GPUs for 24 h, 20 of them rolled out from 12:00.

Runs `slm_operator.sim` (the shipped queue-depth policy and rollout state machine against modelled
vLLM replicas, docs/autoscaling.md) once per autoscaling policy — ours, Serve's default (its
documented defaults), KEDA-style — each with the 20 rollouts done by our state machine. Each run is
split into `--workers` shards (every k-th deployment with 1/k of the GPUs) run in parallel. Then the
20 rolled-out deployments alone, 11:00-14:00, are rolled out by each upgrade strategy: ours, KubeRay
blue/green, KubeRay incremental (ours autoscaling throughout), for the peak GPUs. Prints one line
per run to stderr and, last, one JSON object: SLO attainment and GPU-hours per policy, peak GPUs of
the rolled-out deployments during the rollouts per upgrade strategy, failed requests, and
`sim_seconds` (wall time of the whole benchmark).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from slm_operator.sim.fleet import FleetResult, Policy, Strategy, simulate
from slm_operator.sim.scenarios import fleet_scenario, rollout_scenario


def run_shard(policy: Policy, shard: tuple[int, int], args: argparse.Namespace) -> FleetResult:
    scenario = fleet_scenario(
        policy,
        deployments=args.deployments,
        gpus=args.gpus,
        hours=args.hours,
        rollouts=args.rollouts,
        seed=args.seed,
        shard=shard,
    )
    return simulate(scenario)


def run_rollouts(strategy: Strategy, args: argparse.Namespace) -> FleetResult:
    return simulate(rollout_scenario(strategy, deployments=args.deployments, rollouts=args.rollouts, seed=args.seed))


@dataclass(frozen=True)
class Totals:
    slo_met: float
    arrived: float
    failed: float
    gpu_hours: float

    @property
    def slo_attainment(self) -> float:
        return self.slo_met / max(self.arrived, 1.0)


def totals(results: list[FleetResult]) -> Totals:
    deployments = [d for r in results for d in r.deployments]
    return Totals(
        sum(d.slo_met for d in deployments),
        sum(d.arrived for d in deployments),
        sum(d.failed for d in deployments),
        sum(r.gpu_hours for r in results),
    )


def surge(result: FleetResult) -> tuple[int, int]:
    """Per rolled-out deployment, the largest (peak GPUs during its rollout - GPUs before) and the largest
    peak / before ratio in percent."""
    rolls = [d.rollout for d in result.deployments if d.rollout is not None]
    extra = max((r.peak_gpus - r.gpus_before for r in rolls), default=0)
    ratio = max((round(100 * r.peak_gpus / max(r.gpus_before, 1)) for r in rolls), default=0)
    return extra, ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--gpus", type=int, default=200)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="processes, and shards of the fleet")
    args = parser.parse_args()
    started = time.perf_counter()
    policies = (Policy.QUEUE, Policy.SERVE_DEFAULT, Policy.KEDA)
    strategies = (Strategy.OURS, Strategy.BLUE_GREEN, Strategy.INCREMENTAL)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        shards = {
            policy: [pool.submit(run_shard, policy, (i, args.workers), args) for i in range(args.workers)]
            for policy in policies
        }
        upgrades = {strategy: pool.submit(run_rollouts, strategy, args) for strategy in strategies}
        fleet = {policy: totals([f.result() for f in futures]) for policy, futures in shards.items()}
        rolled = {strategy: future.result() for strategy, future in upgrades.items()}
    for policy, total in fleet.items():
        print(
            f"{policy}: SLO {total.slo_attainment:.4f}, {total.gpu_hours:.1f} GPU-h, "
            f"failed {total.failed:.0f} of {total.arrived:.0f}",
            file=sys.stderr,
        )
    for strategy, result in rolled.items():
        extra, ratio = surge(result)
        print(
            f"rollout {strategy}: peak {result.rollout_peak_gpus} GPUs for the rolled-out deployments; "
            f"per deployment at most +{extra} GPUs, {ratio} % of before; SLO {result.slo_attainment:.4f}",
            file=sys.stderr,
        )
    figures = {
        "queue_slo_attainment": round(fleet[Policy.QUEUE].slo_attainment, 4),
        "serve_default_slo_attainment": round(fleet[Policy.SERVE_DEFAULT].slo_attainment, 4),
        "keda_slo_attainment": round(fleet[Policy.KEDA].slo_attainment, 4),
        "queue_gpu_hours": round(fleet[Policy.QUEUE].gpu_hours, 1),
        "serve_default_gpu_hours": round(fleet[Policy.SERVE_DEFAULT].gpu_hours, 1),
        "keda_gpu_hours": round(fleet[Policy.KEDA].gpu_hours, 1),
        "rollout_peak_gpus_ours": rolled[Strategy.OURS].rollout_peak_gpus,
        "rollout_peak_gpus_blue_green": rolled[Strategy.BLUE_GREEN].rollout_peak_gpus,
        "rollout_peak_gpus_incremental": rolled[Strategy.INCREMENTAL].rollout_peak_gpus,
        "queue_failed_requests": round(fleet[Policy.QUEUE].failed),
        "serve_default_failed_requests": round(fleet[Policy.SERVE_DEFAULT].failed),
        "keda_failed_requests": round(fleet[Policy.KEDA].failed),
        "requests": round(fleet[Policy.QUEUE].arrived),
        "sim_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
