"""Revisions: a short hash of the model-affecting part of the spec.

Changing the model, engine arguments, per-replica resources or where its pods may run (node
selector, tolerations) gives a new revision and starts a rollout (in a new worker group when the pod
template changes); changing autoscaling bounds or rollout policy does not. Adapters count only by
what the engines and pods are started with: their LoRA capacity (`rollout.adapters.engine_capacity`:
how many, the rank bucket) and the PVCs their sources mount. A new source for an adapter name within
those is an adapter rollout inside the stable revision (`rollout.adapters`), not a new revision.
"""

from __future__ import annotations

import hashlib
import json

from slm_operator.api.models import RevisionTemplate, SLMDeploymentSpec
from slm_operator.rollout.adapters import engine_capacity

REVISION_LENGTH = 10


def revision_template(spec: SLMDeploymentSpec) -> RevisionTemplate:
    """The part of the spec a revision is made of."""
    return RevisionTemplate(
        model=spec.model,
        adapters=spec.adapters,
        gpus_per_replica=spec.resources.gpus_per_replica,
        accelerator_type=spec.resources.accelerator_type,
        cpu=spec.resources.cpu,
        memory=spec.resources.memory,
        node_selector=spec.resources.node_selector,
        tolerations=spec.resources.tolerations,
    )


def template_revision(template: RevisionTemplate) -> str:
    """Stable hash of a template. Defaults are left out, so an operator upgrade that adds a defaulted
    field does not change existing revisions (and start needless rollouts); so are the adapters, but
    for the capacity and mounts they need."""
    hashed = template.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude={"adapters"})
    capacity = engine_capacity(template.adapters)
    if capacity is not None:
        hashed["loraCapacity"] = [capacity.max_loras, capacity.max_lora_rank]
        hashed["adapterClaims"] = sorted(
            {
                a.source.removeprefix("pvc://").split("/", 1)[0]
                for a in template.adapters
                if a.source.startswith("pvc://")
            }
        )
    canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]


def compute_revision(spec: SLMDeploymentSpec) -> str:
    return template_revision(revision_template(spec))
