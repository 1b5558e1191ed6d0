"""Metadata of the objects an SLMDeployment owns besides its RayService (ServiceAccount, NetworkPolicy,
the Ray token Secret). Pure."""

from __future__ import annotations

from typing import Any

from slm_operator import constants
from slm_operator.api.models import SLMDeployment


def owner_labels(name: str) -> dict[str, str]:
    """The labels every object and pod of the SLMDeployment `name` carries."""
    return {constants.LABEL_NAME: name, constants.LABEL_MANAGED_BY: constants.MANAGED_BY_VALUE}


def owner_reference(deployment: SLMDeployment) -> dict[str, Any]:
    """The SLMDeployment as controlling owner: its children go when it goes (garbage collection)."""
    meta = deployment.metadata
    return {
        "apiVersion": deployment.api_version,
        "kind": deployment.kind,
        "name": str(meta["name"]),
        "uid": str(meta["uid"]),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(deployment: SLMDeployment, child_name: str) -> dict[str, Any]:
    """name, namespace, labels, and the owner reference where the SLMDeployment has a uid."""
    meta = deployment.metadata
    name = str(meta["name"])
    metadata: dict[str, Any] = {
        "name": child_name,
        "namespace": str(meta.get("namespace") or "default"),
        "labels": owner_labels(name),
    }
    if meta.get("uid"):
        metadata["ownerReferences"] = [owner_reference(deployment)]
    return metadata
