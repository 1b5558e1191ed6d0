"""Writing the desired RayService: classify (create / update / unchanged, or not ours), build the
update on top of what was read, and retry on a conflict — KubeRay's own GET + create, or GET + PUT
carrying the resourceVersion read: a concurrent writer makes the PUT fail with 409, and we re-read.

`classify`, `contains` and `build_update` are pure; `ensure_rayservice` is the one that calls the API.
"""

from __future__ import annotations

import datetime
import enum
import logging
from dataclasses import dataclass
from typing import Any

from slm_operator import constants
from slm_operator.kube import ConflictError, KubeApi
from slm_operator.rollout.conditions import format_time

log = logging.getLogger(__name__)


class Action(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"


class NotOursError(Exception):
    """A RayService of that name exists and slm-operator does not manage it: never taken over."""


def contains(have: Any, want: Any) -> bool:
    """`want` is a part of `have`: the API server may add defaults, never drop what we wrote."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and contains(have[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(have) == len(want) and all(map(contains, have, want))
    return bool(have == want)


def classify(desired: dict[str, Any], existing: dict[str, Any] | None) -> Action:
    if existing is None:
        return Action.CREATE
    labels = existing["metadata"].get("labels") or {}
    if labels.get(constants.LABEL_MANAGED_BY) != constants.MANAGED_BY_VALUE:
        raise NotOursError(f"RayService {existing['metadata']['name']} exists and is not managed by slm-operator")
    meta_want = {k: v for k, v in desired["metadata"].items() if k in ("labels", "annotations", "ownerReferences")}
    if contains(existing.get("spec"), desired["spec"]) and contains(existing["metadata"], meta_want):
        return Action.UNCHANGED
    return Action.UPDATE


def build_update(desired: dict[str, Any], existing: dict[str, Any]) -> dict[str, Any]:
    """The PUT body: our spec, labels, annotations and owner on top of the object as read (its
    resourceVersion makes the write conditional; others' labels and annotations are kept)."""
    meta = dict(existing["metadata"])
    for key in ("labels", "annotations"):
        meta[key] = {**(meta.get(key) or {}), **desired["metadata"].get(key, {})}
    if "ownerReferences" in desired["metadata"]:
        meta["ownerReferences"] = desired["metadata"]["ownerReferences"]
    return {**existing, "metadata": meta, "spec": desired["spec"]}


def stamp_applied(desired: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    """`desired` with the time its serveConfigV2 is written (how long the router has had it)."""
    annotations = {**desired["metadata"].get("annotations", {}), constants.ANNOTATION_APPLIED_AT: format_time(now)}
    return {**desired, "metadata": {**desired["metadata"], "annotations": annotations}}


@dataclass(frozen=True)
class Written:
    action: Action
    rayservice: dict[str, Any]


def ensure_rayservice(
    api: KubeApi,
    desired: dict[str, Any],
    existing: dict[str, Any] | None,
    now: datetime.datetime,
    conflict_retries: int,
) -> Written:
    """Converge the RayService to `desired`. Raises `NotOursError` for a foreign RayService of that
    name, `RejectedError` when the API server refuses it, `ConflictError` after `conflict_retries`
    re-reads that all lost a race. `existing` is the RayService as the pass read it (re-read after a 409)."""
    namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
    for attempt in range(conflict_retries + 1):
        if attempt > 0:
            existing = api.get_rayservice(namespace, name)
        action = classify(desired, existing)
        stamped = stamp_applied(desired, now)
        try:
            if action is Action.CREATE:
                return Written(action, api.create_rayservice(stamped))
            assert existing is not None
            if action is Action.UPDATE:
                return Written(action, api.replace_rayservice(build_update(stamped, existing)))
            return Written(action, existing)
        except ConflictError:
            log.info("RayService %s/%s changed while we wrote it; re-reading", namespace, name)
    raise ConflictError(f"RayService {namespace}/{name} kept changing under us", 409)
