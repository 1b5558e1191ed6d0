"""kopf wiring only: each handler is a few lines that hand over to `Reconciler`.

Handlers live in a registry built per operator (`build_registry`), so tests can run several
operators one after another in one process. Everything a handler needs comes through kopf's `memo`
(see `slm_operator.runner.build_memo`).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from slm_operator import constants
from slm_operator.api import models
from slm_operator.kube import (
    RAY_GROUP,
    RAY_PLURAL,
    RAY_VERSION,
    ConflictError,
    KubeError,
    TransientError,
)
from slm_operator.reconcile import Reconciler, RetryLaterError
from slm_operator.settings import OperatorSettings

SLMD = (models.GROUP, models.VERSION, models.PLURAL)
ANNOTATION_PREFIX = "operator.slm.dev"


def backoff(retry: int) -> float:
    """Seconds before retry number `retry` (0, 1, …) of a failed reconcile: 0.5 s doubling to 30 s."""
    return float(min(30.0, 0.5 * 2**retry))


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> None:
    # Progress and the last-handled spec go to annotations: the status schema is ours alone.
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=ANNOTATION_PREFIX)
    kopf_settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    kopf_settings.peering.lifetime = settings.peering_lifetime_seconds
    kopf_settings.scanning.disabled = True  # namespaces are named exactly; CRDs are installed beforehand
    kopf_settings.networking.request_timeout = settings.request_timeout_seconds
    kopf_settings.networking.error_backoffs = [0.5, 1, 2, 4, 8, 15]
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.reconnect_backoff = 0.5
    # A pass waits only on the API server (probes run on their own loop). 8 threads, not 16: with 1 000
    # new SLMDeployments at once, 16 took the operator's peak RSS from 198 to 219 MiB for 20 % less time
    # to all RayServices (bench/operator_scale.py on 2 cores).
    kopf_settings.execution.max_workers = 8
    # Events are the operator's own, one per transition (slm_operator.events): kopf would post its
    # handler outcomes — every timer run, every retry of the same failure.
    kopf_settings.posting.enabled = False


def _reconcile(memo: Any, body: kopf.Body, retry: int) -> None:
    reconciler: Reconciler = memo.reconciler
    with memo.metrics.duration.time():
        try:
            phase = reconciler.reconcile(dict(body))
        except RetryLaterError as e:  # the reason is in status; the delay grows with each failure
            memo.metrics.reconciles.labels("failed").inc()
            raise kopf.TemporaryError(str(e), delay=e.delay) from e
        except (TransientError, ConflictError) as e:
            memo.metrics.errors.labels(type(e).__name__).inc()
            memo.metrics.reconciles.labels("retry").inc()
            raise kopf.TemporaryError(str(e), delay=backoff(retry)) from e
        except KubeError as e:
            memo.metrics.errors.labels(type(e).__name__).inc()
            memo.metrics.reconciles.labels("failed").inc()
            raise kopf.PermanentError(str(e)) from e
    memo.metrics.reconciles.labels(phase.value).inc()


def needs_timer(status: Any, spec: Any, **_: Any) -> bool:
    """Only SLMDeployments with something time-driven get a timer: a rollout in progress (pauses,
    validation, live metrics), a retired revision still to remove, or continuous quality checks.
    Deploying needs none: the RayService's status changes reach the operator through its watch."""
    status = status or {}
    quality = ((spec or {}).get("rollout") or {}).get("validation", {}).get("qualityCheckIntervalSeconds", 0)
    draining = len(status.get("revisions") or []) > 1  # a retired revision waits for the router to settle
    return bool(status.get("canaryRevision") or status.get("rollout") or draining or quality)


def autoscaled(status: Any, spec: Any, **kwargs: Any) -> bool:
    """Replicas may change with no event at all (Serve's autoscaler): refresh their counts in status
    on a slow timer, unless the rollout timer already runs."""
    scaling = (spec or {}).get("autoscaling") or {}
    varies = scaling.get("minReplicas", 1) != scaling.get("maxReplicas", 1)
    return bool(varies and (status or {}).get("stableRevision") and not needs_timer(status, spec, **kwargs))


def build_registry(
    rollout_interval_seconds: float = 5.0, replicas_interval_seconds: float = 30.0
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        configure_kopf(settings, memo.settings)

    @kopf.on.login(registry=registry)
    def login(memo: Any, **kwargs: Any) -> kopf.ConnectionInfo | None:
        server = memo.settings.kube_server
        if server:
            return kopf.ConnectionInfo(server=server, insecure=True, default_namespace="default")
        return kopf.login_via_client(memo=memo, **kwargs)

    @kopf.on.resume(*SLMD, registry=registry)
    @kopf.on.create(*SLMD, registry=registry)
    @kopf.on.update(*SLMD, registry=registry)
    def reconcile(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
        _reconcile(memo, body, retry)

    @kopf.timer(*SLMD, registry=registry, interval=rollout_interval_seconds, idle=None, when=needs_timer)
    def rollout_tick(body: kopf.Body, memo: Any, **_: Any) -> None:
        """Pauses elapse, validations finish and quality checks fall due without any watch event."""
        _reconcile(memo, body, retry=0)

    @kopf.timer(*SLMD, registry=registry, interval=replicas_interval_seconds, idle=None, when=autoscaled)
    def replicas_tick(body: kopf.Body, memo: Any, **_: Any) -> None:
        """Ready and desired replicas per revision (and a Scaled Event when the target moved)."""
        _reconcile(memo, body, retry=0)

    @kopf.on.delete(*SLMD, registry=registry, optional=True)
    def deleted(
        namespace: str | None, name: str, memo: Any, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
    ) -> None:
        """No finalizer: the RayService goes with its owner by garbage collection."""
        memo.metrics.set_phase(namespace or "", name, None)
        memo.metrics.set_replicas(namespace or "", name, [])
        memo.metrics.set_costs(namespace or "", name, None)
        memo.metrics.set_shadow(namespace or "", name, None)
        memo.reconciler.forget(namespace or "", name)
        logger.info("SLMDeployment deleted; its RayService is garbage-collected")

    @kopf.on.event(
        RAY_GROUP,
        RAY_VERSION,
        RAY_PLURAL,
        registry=registry,
        labels={constants.LABEL_MANAGED_BY: constants.MANAGED_BY_VALUE},
    )
    def rayservice_changed(
        type: str, body: kopf.Body, memo: Any, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
    ) -> None:
        owner = _owner_name(body)
        if owner is None or type == "DELETED":
            return
        try:
            memo.reconciler.rayservice_changed(body["metadata"]["namespace"], owner, dict(body))
        except (KubeError, RetryLaterError) as e:  # the owner's next reconcile or the next RayService event catches up
            logger.info("could not reconcile %s after its RayService changed: %s", owner, e)

    return registry


def _owner_name(body: kopf.Body) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == models.KIND and ref.get("apiVersion") == models.API_VERSION:
            return str(ref["name"])
    return None
