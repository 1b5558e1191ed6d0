"""Creates and updates what fences an SLMDeployment's Ray cluster: the Ray pods' ServiceAccount,
the Ray token Secret and the NetworkPolicy (all built by pure builders, owned by the SLMDeployment).

The ServiceAccount and the Secret are created once per SLMDeployment (uid) and never rewritten: the
operator may create Secrets but not read them, and a ServiceAccount the user annotated for workload
identity keeps its annotations. The NetworkPolicy follows the spec on every pass (GET, then create or
a PUT carrying the resourceVersion read).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slm_operator import constants
from slm_operator.api.models import SLMDeployment
from slm_operator.builder.network_policy import build_network_policy
from slm_operator.builder.pod_security import build_service_account
from slm_operator.builder.ray_auth import build_token_secret, deployment_token
from slm_operator.kube import ConflictError, KubeApi, KubeError
from slm_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

Identity = tuple[str, str, str]
"""(namespace, name, uid) of an SLMDeployment."""


class ForeignObjectError(KubeError):
    """An object the operator would create exists and slm-operator does not manage it: never taken over
    (a permanent error, like any `KubeError` that is not transient)."""


def ensure_security_objects(
    api: KubeApi, settings: OperatorSettings, deployment: SLMDeployment, created: set[Identity], *, new: bool
) -> None:
    """ServiceAccount, token Secret (once per uid, remembered in `created`) and NetworkPolicy. `new`: the
    SLMDeployment has no status yet, so its objects most likely do not exist: they are created without
    a read first (read only on 409); otherwise (an operator restart) they are read first."""
    meta = deployment.metadata
    if not meta.get("uid"):
        return
    identity = (str(meta["namespace"]), str(meta["name"]), str(meta["uid"]))
    first = identity not in created
    if first:
        _ensure_service_account(api, build_service_account(deployment), create_first=new)
        secret = build_token_secret(settings.ray_token_key.get_secret_value().encode(), deployment)
        if api.create_secret(secret):
            log.info("created Ray token Secret %s/%s", identity[0], secret["metadata"]["name"])
        created.add(identity)
    _ensure_network_policy(api, build_network_policy(deployment, settings.control_peers), create_first=first and new)


def dashboard_token(settings: OperatorSettings, deployment: SLMDeployment) -> str | None:
    """The bearer token for the SLMDeployment's Ray dashboard."""
    if settings.dashboard_token is not None:
        return settings.dashboard_token.get_secret_value()
    if not deployment.metadata.get("uid"):
        return None
    return deployment_token(settings.ray_token_key.get_secret_value().encode(), deployment)


def forget(created: set[Identity], namespace: str, name: str) -> None:
    """The SLMDeployment is gone (its objects go by garbage collection)."""
    created.difference_update({i for i in created if i[:2] == (namespace, name)})


def _existing(
    kind: str,
    desired: dict[str, Any],
    read: Callable[[str, str], dict[str, Any] | None],
    create: Callable[[dict[str, Any]], object],
    *,
    create_first: bool,
) -> dict[str, Any] | None:
    """Our object of `desired`'s name as it already exists, or None when this call created it (or it
    was deleted between a 409 and the read: the next pass creates it). Read first, unless `create_first`
    (a new SLMDeployment, most likely without one): then read only when the create answers 409. One that
    slm-operator does not manage raises `ForeignObjectError`: it is never taken over."""
    namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
    existing = None if create_first else read(namespace, name)
    if existing is None:
        try:
            create(desired)
            log.info("created %s %s/%s", kind, namespace, name)
            return None
        except ConflictError:  # it exists: ours from an earlier operator, or someone else's
            existing = read(namespace, name)
    if existing is not None and not _ours(existing):
        raise ForeignObjectError(f"{kind} {namespace}/{name} exists and is not managed by slm-operator")
    return existing


def _ensure_service_account(api: KubeApi, desired: dict[str, Any], *, create_first: bool) -> None:
    """Exists and is ours (a foreign one's token would go to our Ray head); never rewritten."""
    _existing("ServiceAccount", desired, api.get_service_account, api.create_service_account, create_first=create_first)


def _ensure_network_policy(api: KubeApi, desired: dict[str, Any], *, create_first: bool) -> None:
    """Converge the NetworkPolicy (`create_first`: see `_existing`)."""
    namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
    existing = _existing(
        "NetworkPolicy", desired, api.get_network_policy, api.create_network_policy, create_first=create_first
    )
    if existing is None:
        return
    meta = existing["metadata"]
    if existing.get("spec") == desired["spec"] and meta.get("ownerReferences") == desired["metadata"].get(
        "ownerReferences"
    ):
        return
    labels = {**(meta.get("labels") or {}), **desired["metadata"]["labels"]}
    updated = {**existing, "metadata": {**meta, "labels": labels}, "spec": desired["spec"]}
    if "ownerReferences" in desired["metadata"]:
        updated["metadata"]["ownerReferences"] = desired["metadata"]["ownerReferences"]
    api.replace_network_policy(updated)
    log.info("updated NetworkPolicy %s/%s", namespace, name)


def _ours(obj: dict[str, Any]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    return labels.get(constants.LABEL_MANAGED_BY) == constants.MANAGED_BY_VALUE
