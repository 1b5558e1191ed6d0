"""Carries out the probing actions of `rollout.decide` in the background and hands their results to a
later pass: golden prompts, reads of the router's sample window and Serve's replica counts never run
inside a pass.

`ProbeLoop` is one asyncio event loop in a daemon thread, owned by the shell (the operator or
`slm serve`), that runs every probe of every SLMDeployment. One `RolloutObserver` per SLMDeployment
starts its probes there (at most one of each kind at a time, each with a total deadline), keeps the
finished results, and cancels what is running when the object changes generation or is deleted.
A pass only starts probes and reads finished results. A result is handed over once; losing it (a
restart) only means `decide` asks again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from slm_operator.api.models import SLMDeploymentSpec
from slm_operator.probes import (
    VALIDATION_DEADLINE_S,
    SamplesSnapshot,
    fetch_adapters,
    fetch_samples,
    fetch_shadow,
    run_validation,
)
from slm_operator.rollout.actions import ObserveMetrics, ObserveShadow, RunValidation, ValidateAdapter
from slm_operator.rollout.adapters import AdapterObservation, engine_adapter_name
from slm_operator.rollout.gate import ValidationRun
from slm_operator.rollout.live import LiveSamples, RevisionSamples
from slm_operator.rollout.shadow import ShadowWindow
from slm_operator.serve_details import RevisionReplicas, fetch_serve_details, read_revisions

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVE_DETAILS_TIMEOUT_S = 5.0
SERVE_DETAILS_MIN_INTERVAL_S = 5.0
"""Serve's replica counts are read at most this often per SLMDeployment."""


class ProbeLoop:
    """An asyncio loop in a daemon thread: where every probe of one shell runs. Thread-safe."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="slm-probes", daemon=True)
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def close(self) -> None:
        """Cancel every probe still running and stop the thread."""

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(cancel_all(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()


@dataclass
class _Running:
    key: object
    future: concurrent.futures.Future[Any]


@dataclass
class RolloutObserver:
    """The probes of one SLMDeployment. `on_result` is called (from the probe thread) when a result
    worth a pass arrives: a finished validation, or replica counts that differ from the last ones."""

    loop: ProbeLoop
    on_result: Callable[[], None] = lambda: None
    validation_deadline_s: float = VALIDATION_DEADLINE_S
    transport: httpx.AsyncBaseTransport | None = None
    """For golden prompts and the router's sample window; None is the network (tests pass an
    `httpx.MockTransport` or answer in-process)."""
    validation: ValidationRun | None = None
    live: LiveSamples | None = None
    shadow: ShadowWindow | None = None
    """The router's latest shadow counts (cumulative for its phase, so kept across passes)."""
    adapter_state: AdapterObservation | None = None
    """The adapter versions the stable's engines hold, as last read (kept across passes)."""
    adapter_validation: dict[str, ValidationRun] = field(default_factory=dict)
    """Finished adapter validations by engine name (`name@version`), each handed over once."""
    cursor: tuple[str, str, str, int] | None = None
    """(canary, step start, router instance, sequence number): where the current step's samples begin."""
    token_base: dict[str, tuple[int, int]] = field(default_factory=dict)
    """The router's token totals per revision where the cursor was taken: the step's tokens are the
    totals of later reads minus these."""
    generation: int | None = None
    _replicas: RevisionReplicas | None = None
    _replicas_read_at: float = float("-inf")
    _running: dict[str, _Running] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ what a pass reads

    def take(self) -> tuple[ValidationRun | None, LiveSamples | None]:
        """The results finished since the last pass (each handed over once)."""
        with self._guard:
            taken = self.validation, self.live
            self.validation = self.live = None
            return taken

    def latest_shadow(self) -> ShadowWindow | None:
        """The router's shadow counts last read (not handed over once: each read counts the whole phase)."""
        with self._guard:
            return self.shadow

    def take_adapters(self) -> AdapterObservation:
        """The adapter state last read, with the adapter validations finished since the last pass."""
        with self._guard:
            state = self.adapter_state or AdapterObservation()
            runs, self.adapter_validation = self.adapter_validation, {}
        return dataclasses.replace(state, validation=runs)

    def replicas(self, revisions: Sequence[str]) -> RevisionReplicas | None:
        """The last replica counts read from Serve, if they cover exactly `revisions`."""
        with self._guard:
            current = self._replicas
        if current is None or set(current.ready) != set(revisions):
            return None
        return current

    def is_running(self, kind: str) -> bool:
        with self._guard:
            running = self._running.get(kind)
            return running is not None and not running.future.done()

    # ------------------------------------------------------------ what a pass starts

    def sync(self, generation: int) -> None:
        """The object is at `generation`: probes started for an earlier one are cancelled and their
        results dropped (they answer a question the spec no longer asks)."""
        with self._guard:
            if self.generation is not None and generation != self.generation:
                self._cancel_locked()
                self.validation = self.live = self.shadow = self.adapter_state = None
                self.adapter_validation = {}
                self.cursor = None
            self.generation = generation

    def cancel(self) -> None:
        """Stop every probe of this object (it was deleted)."""
        with self._guard:
            self._cancel_locked()

    def run_validation(
        self, router_url: str, spec: SLMDeploymentSpec, action: RunValidation, *, pin_token: str
    ) -> None:
        """Golden prompts through the router, pinned to the revision (and its baseline) with the
        deployment's pin token (`slm_serving.pins`). Started once: while one for the same revisions
        runs, asking again does nothing; one for others is cancelled."""
        run = run_validation(
            router_url,
            spec.rollout.validation.prompts,
            spec.model.served_model_name,
            action.revision,
            action.baseline,
            pin_token=pin_token,
            deadline_s=self.validation_deadline_s,
            transport=self.transport,
        )
        self._start("validation", action, run, self._validation_done)

    def observe_live(self, router_url: str, action: ObserveMetrics, *, pin_token: str) -> None:
        """The router's requests of canary and stable since the step began, read in the background.
        The first read of a step only takes the cursor (so it reports no traffic yet); so does the
        first read after the router restarted, whose window starts empty. One read at a time."""
        step = (action.canary, action.since)
        with self._guard:
            known = self.cursor if self.cursor is not None and self.cursor[:2] == step else None
        after = known[3] if known is not None else None
        fetch = fetch_samples(router_url, after, pin_token=pin_token, transport=self.transport)
        self._start("samples", action, fetch, lambda snapshot: self._samples_done(action, known, snapshot))

    def observe_shadow(self, router_url: str, action: ObserveShadow, *, pin_token: str) -> None:
        """The router's shadow counts, read in the background, one read at a time."""
        fetch = fetch_shadow(router_url, pin_token=pin_token, transport=self.transport)
        self._start("shadow", action, fetch, self._shadow_done)

    def observe_adapters(self, router_url: str, *, pin_token: str) -> None:
        """Which adapter versions the stable's engines hold (`GET /slm/adapters`), one read at a time."""
        fetch = fetch_adapters(router_url, pin_token=pin_token, transport=self.transport)
        self._start("adapters", router_url, fetch, self._adapters_done)

    def run_adapter_validation(
        self, router_url: str, spec: SLMDeploymentSpec, action: ValidateAdapter, *, pin_token: str
    ) -> None:
        """The adapter's golden prompts sent naming one version (`name@version`), through the router to
        the stable's engines. Started once per version; one for another version is cancelled."""
        key = engine_adapter_name(action.name, action.version)
        prompts = [p.model_copy(update={"adapter": key}) for p in action.prompts]
        run = run_validation(
            router_url,
            prompts,
            spec.model.served_model_name,
            action.revision,
            None,
            pin_token=pin_token,
            deadline_s=self.validation_deadline_s,
            transport=self.transport,
        )
        self._start("adapter-validation", key, run, lambda result: self._adapter_validation_done(key, result))

    def refresh_replicas(self, dashboard_url: str, token: str | None, revisions: Sequence[str]) -> None:
        """Serve's replica counts per revision, read in the background at most every few seconds."""
        with self._guard:
            if time.monotonic() - self._replicas_read_at < SERVE_DETAILS_MIN_INTERVAL_S:
                return
            self._replicas_read_at = time.monotonic()
        wanted = list(revisions)
        fetch = fetch_serve_details(dashboard_url, timeout_s=SERVE_DETAILS_TIMEOUT_S, token=token)
        self._start("replicas", tuple(wanted), fetch, lambda details: self._replicas_done(details, wanted))

    # ------------------------------------------------------------ in the probe thread

    def _start(self, kind: str, key: object, coroutine: Coroutine[Any, Any, T], done: Callable[[T], None]) -> None:
        with self._guard:
            running = self._running.get(kind)
            if running is not None and not running.future.done():
                if running.key == key:
                    coroutine.close()
                    return
                running.future.cancel()
            future = self.loop.submit(coroutine)
            self._running[kind] = _Running(key, future)

        def finished(result: concurrent.futures.Future[T]) -> None:
            if result.cancelled():
                return
            error = result.exception()
            if error is not None:
                log.info("%s probe failed: %s: %s", kind, type(error).__name__, error)
                return
            with self._guard:
                current = self._running.get(kind)
                if current is None or current.future is not result:
                    return  # superseded meanwhile
            done(result.result())

        future.add_done_callback(finished)

    def _cancel_locked(self) -> None:
        for running in self._running.values():
            running.future.cancel()
        self._running.clear()

    def _validation_done(self, run: ValidationRun) -> None:
        with self._guard:
            self.validation = run
        self.on_result()

    def _samples_done(
        self, action: ObserveMetrics, known: tuple[str, str, str, int] | None, snapshot: SamplesSnapshot
    ) -> None:
        step = (action.canary, action.since)
        fresh = known is not None and known[2] == snapshot.instance
        revisions = snapshot.revisions if fresh else {}
        empty = RevisionSamples()
        with self._guard:
            if not fresh:
                # A restarted router (known, other instance) counts from zero: all of its window is this step's.
                self.cursor = (*step, snapshot.instance, 0 if known is not None else snapshot.last)
                self.token_base = {} if known is not None else dict(snapshot.tokens)

            def step_samples(revision: str) -> RevisionSamples:
                prompt, completion = snapshot.tokens.get(revision, (0, 0))
                base_prompt, base_completion = self.token_base.get(revision, (0, 0))
                return dataclasses.replace(
                    revisions.get(revision, empty),
                    prompt_tokens=max(0, prompt - base_prompt),
                    completion_tokens=max(0, completion - base_completion),
                )

            self.live = LiveSamples(
                canary_revision=action.canary,
                canary=step_samples(action.canary) if fresh else empty,
                stable=step_samples(action.stable) if fresh else empty,
            )

    def _adapters_done(self, state: AdapterObservation) -> None:
        with self._guard:
            changed = state != self.adapter_state
            self.adapter_state = state
        if changed:
            self.on_result()

    def _adapter_validation_done(self, key: str, run: ValidationRun) -> None:
        with self._guard:
            self.adapter_validation[key] = dataclasses.replace(run, revision=key)
        self.on_result()

    def _shadow_done(self, window: ShadowWindow | None) -> None:
        with self._guard:
            self.shadow = window

    def _replicas_done(self, details: dict[str, Any] | httpx.HTTPError, revisions: list[str]) -> None:
        if isinstance(details, httpx.HTTPError):
            log.info("Serve details unavailable (replicas estimated): %s", details)
            readout = None
        else:
            readout = read_revisions(details, revisions)
        with self._guard:
            changed = readout != self._replicas
            self._replicas = readout
        if changed:
            self.on_result()
