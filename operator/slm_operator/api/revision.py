"""Revisions: a short hash of the model-affecting part of the spec.

Changing the model, its adapters, engine arguments, per-replica resources or where its pods may run
(node selector, tolerations) gives a new revision and starts a rollout (in a new worker group when
the pod template changes); changing autoscaling bounds or rollout policy does not.
"""

from __future__ import annotations

import hashlib
import json

from slm_operator.api.models import RevisionTemplate, SLMDeploymentSpec

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
    field does not change existing revisions (and start needless rollouts)."""
    canonical = json.dumps(
        template.model_dump(mode="json", by_alias=True, exclude_defaults=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]


def compute_revision(spec: SLMDeploymentSpec) -> str:
    return template_revision(revision_template(spec))
