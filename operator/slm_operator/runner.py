"""Start the operator: `run_operator` for `slm operator`, `operator_in_thread` for tests and tools."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import random
import threading
from collections.abc import Iterator
from typing import Any

import kopf

from slm_operator.canary_pin import PinKey
from slm_operator.handlers import build_registry
from slm_operator.kube import KubeApi, build_api_client
from slm_operator.metrics import OperatorMetrics
from slm_operator.reconcile import Reconciler
from slm_operator.settings import OperatorSettings


def post_event(body: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """A Kubernetes Event on the SLMDeployment, through kopf's poster (batched, retried)."""
    kopf.event(kopf.Body(body), type=type_, reason=reason, message=message[:1000])  # type: ignore[arg-type]


def build_memo(settings: OperatorSettings) -> kopf.Memo:
    api = KubeApi(build_api_client(settings), settings)
    metrics = OperatorMetrics()
    reconciler = Reconciler(
        api=api,
        settings=settings,
        metrics=metrics,
        emit=post_event,
        clock=lambda: datetime.datetime.now(datetime.UTC),
        pin_key=PinKey.from_settings(settings),
    )
    return kopf.Memo(settings=settings, api=api, metrics=metrics, reconciler=reconciler)


async def operate(
    settings: OperatorSettings,
    memo: kopf.Memo,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
) -> None:
    await kopf.operator(
        registry=build_registry(settings.rollout_interval_seconds, settings.replicas_interval_seconds),
        memo=memo,
        standalone=not settings.peering_name,
        peering_name=settings.peering_name or None,
        # kopf pauses every replica when live peers share a priority: give each process its own.
        priority=settings.peering_priority or random.SystemRandom().randint(1, 32767),
        clusterwide=settings.clusterwide,
        namespaces=settings.namespace_list,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def run_operator(settings: OperatorSettings) -> None:
    """Run until SIGINT/SIGTERM: logs, metrics on `SLM_METRICS_PORT`, liveness on `SLM_HEALTH_PORT`."""
    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=False, log_format=log_format, log_refkey="k8s")
    memo = build_memo(settings)
    if settings.metrics_port:
        memo.metrics.serve(settings.metrics_port)
    asyncio.run(operate(settings, memo))


@contextlib.contextmanager
def operator_in_thread(settings: OperatorSettings, ready_timeout: float = 30) -> Iterator[kopf.Memo]:
    """The real operator in a background thread with its own event loop; stopped on exit."""
    memo = build_memo(settings)
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(operate(settings, memo, stop, ready))
        except BaseException as e:  # surfaced to the caller below
            errors.append(e)
            ready.set()

    thread = threading.Thread(target=main, name="slm-operator", daemon=True)
    thread.start()
    if not ready.wait(ready_timeout) or errors:
        stop.set()
        raise RuntimeError(f"operator did not start: {errors}")
    try:
        yield memo
    finally:
        stop.set()
        thread.join(30)
