"""Start the operator: `run_operator` for `slm operator`, `operator_in_thread` for tests and tools."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import random
import threading
from collections.abc import Iterator

import kopf

from slm_operator.admission.webhook import register_admission
from slm_operator.events import EventPoster
from slm_operator.handlers import build_registry
from slm_operator.kube import KubeApi, build_api_client
from slm_operator.metrics import OperatorMetrics
from slm_operator.reconcile import Reconciler
from slm_operator.settings import OperatorSettings

_GRACEFUL_STOP_S = 1.0
"""How long `operator_in_thread` lets kopf stop by itself before cancelling it."""


def build_memo(settings: OperatorSettings) -> kopf.Memo:
    api = KubeApi(build_api_client(settings), settings)
    metrics = OperatorMetrics()
    events = EventPoster(api)
    reconciler = Reconciler(
        api=api,
        settings=settings,
        metrics=metrics,
        emit=events,
        clock=lambda: datetime.datetime.now(datetime.UTC),
    )
    return kopf.Memo(settings=settings, api=api, metrics=metrics, reconciler=reconciler, events=events)


async def operate(
    settings: OperatorSettings,
    memo: kopf.Memo,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
) -> None:
    registry = build_registry(settings.rollout_interval_seconds, settings.replicas_interval_seconds)
    if settings.webhook_port:
        register_admission(registry, settings, memo.api.client)
    await kopf.operator(
        registry=registry,
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
    try:
        asyncio.run(operate(settings, memo))
    finally:
        memo.reconciler.close()
        memo.events.close()


@contextlib.contextmanager
def operator_in_thread(settings: OperatorSettings, ready_timeout: float = 30) -> Iterator[kopf.Memo]:
    """The real operator in a background thread with its own event loop; stopped on exit.

    Stopping sets kopf's stop flag (a graceful stop takes well under a second), then cancels the
    operator if it is still running after `_GRACEFUL_STOP_S`: kopf 1.45.2's `run_tasks` waits a fixed 5 s
    for tasks spawned during its own shutdown (a timer re-spawned by the last watch event) before it
    cancels them, and tests and tools start and stop operators often.
    """
    memo = build_memo(settings)
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[None]]] = []

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        running.append((asyncio.get_running_loop(), task))
        await operate(settings, memo, stop, ready)

    def main() -> None:
        try:
            asyncio.run(run())
        except asyncio.CancelledError:
            pass  # cancelled on exit, below
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
        thread.join(_GRACEFUL_STOP_S)
        if thread.is_alive() and running:
            loop, task = running[0]
            loop.call_soon_threadsafe(task.cancel)
        thread.join(30)
        memo.reconciler.close()
        memo.events.close()
