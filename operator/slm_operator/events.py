"""Kubernetes Events on an SLMDeployment, posted by the operator itself (kopf's own posting is off:
it would post handler outcomes). Only transitions are posted — the callers decide which; `build_event`
is pure."""

from __future__ import annotations

import concurrent.futures
import datetime
import logging
import secrets
from typing import Any

from slm_operator.kube import KubeApi, KubeError
from slm_operator.rollout.conditions import format_time

log = logging.getLogger(__name__)

COMPONENT = "slm-operator"
MAX_MESSAGE = 1024
"""The API server refuses longer Event messages."""


def build_event(
    involved: dict[str, Any], type_: str, reason: str, message: str, now: datetime.datetime, suffix: str
) -> dict[str, Any]:
    """A core/v1 Event about `involved` (an SLMDeployment as read), named `<object>.<suffix>`."""
    meta = involved["metadata"]
    stamp = format_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{suffix}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", ""),
            "kind": involved.get("kind", ""),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        },
        "type": type_,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventPoster:
    """`Reconciler.emit`: posts through the operator's API client on a thread of its own (a pass does
    not wait for it, as with kopf's poster); a failed post is logged, never raised."""

    def __init__(self, api: KubeApi) -> None:
        self._api = api
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="slm-events")

    def __call__(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        event = build_event(involved, type_, reason, message, datetime.datetime.now(datetime.UTC), secrets.token_hex(8))
        self._pool.submit(self._post, event)

    def _post(self, event: dict[str, Any]) -> None:
        try:
            self._api.create_event(event)
        except KubeError as error:
            log.warning("could not post Event %s on %s: %s", event["reason"], event["involvedObject"]["name"], error)

    def close(self) -> None:
        """Post what is queued, then stop."""
        self._pool.shutdown(wait=True)
