"""Fixed scenarios: the fleet of bench/fleet_sim.py and the calibration run of bench/autoscale.py."""

from __future__ import annotations

import random
from typing import Any, Final

from slm_operator.api.models import SLMDeploymentSpec
from slm_operator.sim.engine import UnitParams
from slm_operator.sim.fleet import Policy, Scenario, SimDeployment, Strategy, unit_params
from slm_operator.sim.profiles import A100, H100, L4, PROFILES, TINY_CPU
from slm_operator.sim.workload import Burst, Traffic, random_bursts

FLEET_MODELS: Final = (
    ("hf://Qwen/Qwen2.5-0.5B-Instruct", "0.5B", L4),
    ("hf://microsoft/Phi-3-mini-4k-instruct", "3.8B", L4),
    ("hf://meta-llama/Llama-3.1-8B-Instruct", "8B", H100),
    ("hf://meta-llama/Llama-3.1-8B-Instruct", "8B", A100),
    ("hf://microsoft/Phi-3-mini-4k-instruct", "3.8B", H100),
)
ROLLOUT_AT_S: Final = 12 * 3600.0
ROLLOUT_SPACING_S: Final = 120.0


def capacity_rps(params: UnitParams) -> float:
    """Requests per second one replica answers with a full batch."""
    batch = params.max_batch
    service = params.prefill_s + params.output_tokens * (params.itl_s + params.itl_per_seq_s * (batch - 1))
    return batch / service


def full_batch_latency_s(params: UnitParams) -> float:
    return params.prefill_s + params.output_tokens * (params.itl_s + params.itl_per_seq_s * (params.max_batch - 1))


def fleet_spec(source: str, accelerator: str, scale_to_zero: bool) -> SLMDeploymentSpec:
    document: dict[str, Any] = {
        "model": {"source": source, "servedModelName": "model"},
        "resources": {"gpusPerReplica": 1, "acceleratorType": accelerator},
        "autoscaling": {
            "minReplicas": 0 if scale_to_zero else 1,
            "maxReplicas": 4,
            "targetQueueDepth": 4,
            "scaleToZero": scale_to_zero,
        },
        "rollout": {"maxSurgeReplicas": 1},
    }
    return SLMDeploymentSpec.model_validate(document)


def fleet_deployments(count: int, hours: float, seed: int) -> tuple[SimDeployment, ...]:
    """`count` deployments cycling through FLEET_MODELS; each one's daily mean load needs 0.3-1.0 of a
    replica, peaks at 1.6x in the afternoon, with ~3 bursts a day of 2-4x; every fifth may scale to zero.
    SLO: time to first token ≤ 1 s and latency ≤ 1 s + 1.5x a full batch's generation time."""
    rng = random.Random(seed)
    deployments = []
    for index in range(count):
        source, size, gpu = FLEET_MODELS[index % len(FLEET_MODELS)]
        spec = fleet_spec(source, gpu, scale_to_zero=index % 5 == 4)
        profile = PROFILES[(size, gpu)]
        probe = SimDeployment(f"d{index:03d}", spec, Traffic(mean_rps=1.0), profile)
        params = unit_params(probe)
        traffic = Traffic(
            mean_rps=rng.uniform(0.3, 1.0) * capacity_rps(params),
            peak_hour=rng.uniform(11, 17),
            bursts=random_bursts(rng, per_day=3, hours=hours),
        )
        slo_latency = 1.0 + 1.5 * full_batch_latency_s(params)
        deployments.append(SimDeployment(f"d{index:03d}", spec, traffic, profile, 1.0, slo_latency))
    return tuple(deployments)


def rolled_out(deployments: int, rollouts: int) -> list[int]:
    """Which deployments the benchmark rolls out: one per block of deployments, across all model kinds."""
    step = max(1, deployments // max(rollouts, 1))
    return sorted({min(deployments - 1, k * step + k % len(FLEET_MODELS)) for k in range(min(rollouts, deployments))})


def fleet_scenario(
    policy: Policy,
    *,
    deployments: int = 100,
    gpus: int = 200,
    hours: float = 24.0,
    rollouts: int = 20,
    strategy: Strategy = Strategy.OURS,
    seed: int = 1,
    shard: tuple[int, int] = (0, 1),
) -> Scenario:
    """The benchmark's fleet: `rollouts` deployments get a new revision from 12:00, 2 min apart.

    `shard=(i, k)` keeps deployments i, i+k, i+2k… and 1/k of the GPUs, so k processes can share the
    work (the pool is then split, not shared: a stated approximation of bench/fleet_sim.py).
    """
    fleet = fleet_deployments(deployments, 24.0, seed)
    rolled = set(rolled_out(deployments, rollouts))
    order = {index: k for k, index in enumerate(sorted(rolled))}
    index, count = shard
    kept = list(range(index, deployments, count))
    schedule = tuple(
        (position, ROLLOUT_AT_S + order[original] * ROLLOUT_SPACING_S)
        for position, original in enumerate(kept)
        if original in rolled and hours * 3600 > ROLLOUT_AT_S
    )
    return Scenario(
        tuple(fleet[i] for i in kept),
        gpus // count,
        hours,
        seed=seed + index,
        policy=policy,
        strategy=strategy,
        rollouts=schedule,
    )


def rollout_scenario(strategy: Strategy, *, deployments: int = 100, rollouts: int = 20, seed: int = 1) -> Scenario:
    """Only the rolled-out deployments of the fleet, 11:00 to 14:00, with room in the pool: how many GPUs
    each upgrade strategy needs (ours autoscaling throughout)."""
    fleet = fleet_deployments(deployments, 24.0, seed)
    rolled = rolled_out(deployments, rollouts)
    schedule = tuple((k, ROLLOUT_AT_S + k * ROLLOUT_SPACING_S) for k in range(len(rolled)))
    return Scenario(
        tuple(fleet[i] for i in rolled),
        8 * len(rolled),
        3.0,
        seed=seed,
        start_h=11.0,
        strategy=strategy,
        rollouts=schedule,
    )


# ---------------------------------------------------------------- bench/autoscale.py on the tiny model

AUTOSCALE_CAPACITY_RPS: Final = 23.8
"""One tiny replica at concurrency 8, measured by bench/autoscale.py (2026-12-01 run, docs/autoscaling.md)."""
AUTOSCALE_WINDOW_S: Final = 190.0
"""The bench integrates replicas until its last answer (189 s in that run)."""


def autoscale_bench_scenario(policy: Policy, seed: int = 7) -> Scenario:
    """bench/autoscale.py's run in the simulator: tiny.yaml autoscaled 1..2, targetQueueDepth 2, delays
    2 s / 10 s, vLLM batch 8, 32 output tokens; calm 10 s at 1/s, moderate 40 s at half a replica's
    capacity, burst 45 s at 1.1x, cooldown 45 s at 1/s; SLO 2 s end to end, requests time out at 120 s.
    Serve's default policy gets the same config, as in the bench (one field differs: the policy)."""
    capacity = AUTOSCALE_CAPACITY_RPS
    spec = SLMDeploymentSpec.model_validate(
        {
            "model": {"source": "tiny://good", "servedModelName": "tiny", "engineArgs": {"max_num_seqs": 8}},
            "resources": {"gpusPerReplica": 0},
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 2,
                "targetQueueDepth": 2,
                "upscaleDelaySeconds": 2,
                "downscaleDelaySeconds": 10,
            },
        }
    )
    traffic = Traffic(
        mean_rps=1.0,
        daily_swing=0.0,
        bursts=(Burst(10, 40, 0.5 * capacity), Burst(50, 45, 1.1 * capacity)),
        prompt_tokens=12,
        output_tokens=32,
    )
    deployment = SimDeployment("tiny", spec, traffic, TINY_CPU, slo_ttft_s=float("inf"), slo_latency_s=2.0)
    return Scenario(
        (deployment,), gpus=2, hours=AUTOSCALE_WINDOW_S / 3600, seed=seed, policy=policy, timeout_s=120.0, dt=1.0
    )
