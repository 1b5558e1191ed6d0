"""Which revisions are live, and how the replica budget is split between them (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from slm_operator.api.models import (
    AutoscalingSpec,
    RevisionStatus,
    SLMDeploymentSpec,
    SLMDeploymentStatus,
)
from slm_operator.api.revision import revision_template, template_revision


def live_revisions(spec: SLMDeploymentSpec, status: SLMDeploymentStatus | None) -> list[RevisionStatus]:
    """The revisions the RayService must serve: those recorded in status, or else the spec's own at 100 %."""
    if status is not None and status.revisions:
        return list(status.revisions)
    template = revision_template(spec)
    return [RevisionStatus(name=template_revision(template), role="stable", weight=100, template=template)]


def serving_revision(revisions: Sequence[RevisionStatus], status: SLMDeploymentStatus | None) -> str:
    """Of the live `revisions`, the one that serves outside a canary: the stable one while it is live,
    else the first."""
    stable = status.stable_revision if status is not None else None
    return stable if stable is not None and any(r.name == stable for r in revisions) else revisions[0].name


@dataclass(frozen=True)
class ReplicaBounds:
    min_replicas: int
    max_replicas: int


def split_replica_budget(
    autoscaling: AutoscalingSpec, max_surge_replicas: int, canary_weight: int
) -> tuple[ReplicaBounds, ReplicaBounds]:
    """(stable, canary) replica bounds while a canary runs.

    Together they never exceed maxReplicas + maxSurgeReplicas. The canary always keeps one replica
    (it must answer validation prompts before it gets traffic) and grows with its weight; the stable
    revision gives up what the canary takes beyond the surge allowance.
    """
    budget = autoscaling.max_replicas + max_surge_replicas
    canary_max = max(1, math.ceil(autoscaling.max_replicas * canary_weight / 100))
    canary_max = min(canary_max, budget - 1) if budget > 1 else 1
    stable_max = max(1, min(autoscaling.max_replicas, budget - canary_max))
    stable_min = min(autoscaling.min_replicas, stable_max)
    canary_min = min(max(1, math.ceil(autoscaling.min_replicas * canary_weight / 100)), canary_max)
    return ReplicaBounds(stable_min, stable_max), ReplicaBounds(canary_min, canary_max)


def revision_bounds(spec: SLMDeploymentSpec, status: SLMDeploymentStatus | None) -> dict[str, ReplicaBounds]:
    """Replica bounds of each live revision.

    Without a canary the stable revision gets the spec's bounds. With one, the budget is split by the
    canary's weight. A revision that is neither stable nor canary is draining (weight 0, removed once
    the router no longer uses it): it may shrink to nothing and never grows.
    """
    revisions = live_revisions(spec, status)
    stable = serving_revision(revisions, status)
    canary = status.canary_revision if status is not None else None
    autoscaling = spec.autoscaling
    draining = ReplicaBounds(0, 1)
    canary_entry = next((r for r in revisions if r.name == canary), None)
    if canary_entry is None:
        full = ReplicaBounds(autoscaling.min_replicas, autoscaling.max_replicas)
        return {r.name: full if r.name == stable else draining for r in revisions}
    stable_bounds, canary_bounds = split_replica_budget(
        autoscaling, spec.rollout.max_surge_replicas, canary_entry.weight
    )
    return {
        r.name: canary_bounds if r.name == canary else stable_bounds if r.name == stable else draining
        for r in revisions
    }
