"""Observe → decide → apply, for one SLMDeployment. Level-based and idempotent: every handler calls
`Reconciler.reconcile` with the object as it is now, and running it twice writes nothing new.

A pass waits on nothing but the Kubernetes API: probes of the model (golden prompts, metrics, Serve's
replica counts) run in the background (`observer`) and a later pass reads their results. The
RayService write lives in `rayservice_write`; what a pass observes in `observation`; carrying out
`decide`'s actions in `executor`. A RayService that cannot be written (rejected, or a foreign one of
that name) is reported in status and retried with a growing delay. Status is written with the
resourceVersion read: a 409 means someone wrote in between, and the pass starts over.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slm_operator import constants
from slm_operator.api.models import ConditionType, Phase, SLMDeployment, SLMDeploymentStatus
from slm_operator.api.validation import FieldError, apply_defaults, slm_validator, validate_object
from slm_operator.builder.cluster_plan import plan_deployment_cluster
from slm_operator.builder.rayservice import build_rayservice, endpoint_url
from slm_operator.canary_pin import pin_digest, pin_token
from slm_operator.executor import carry_out
from slm_operator.kube import ConflictError, KubeApi, KubeError, NotFoundError, RejectedError
from slm_operator.metrics import OperatorMetrics
from slm_operator.observation import gather_observation
from slm_operator.observer import ProbeLoop, RolloutObserver
from slm_operator.rayservice_write import Action, NotOursError, ensure_rayservice
from slm_operator.rollout.actions import EmitEvent, RecordQuality
from slm_operator.rollout.conditions import format_time, set_condition
from slm_operator.rollout.decide import decide
from slm_operator.rollout.working import RolloutSettings
from slm_operator.security import Identity, ensure_security_objects
from slm_operator.security import forget as forget_security
from slm_operator.settings import OperatorSettings
from slm_operator.status import build_invalid_status, failure_message, observe, phase_event, status_document

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any], str, str, str], None]
"""(SLMDeployment body, type Normal|Warning, reason, message) → posts a Kubernetes Event."""

REJECTED = "RayServiceRejected"
NOT_OURS = "RayServiceNotOwned"
"""Ready-condition reasons when the RayService cannot be written; retried with `Backoff`."""
WRITTEN_EVENTS = {Action.CREATE: ("RayServiceCreated", "created"), Action.UPDATE: ("RayServiceUpdated", "updated")}


class RetryLaterError(Exception):
    """The pass could not finish (the reason is in status); try again in `delay` seconds."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class StatusConflictError(Exception):
    """The SLMDeployment changed between our read and our status write (409)."""


@dataclass(frozen=True)
class Backoff:
    """Failed RayService writes of one spec generation: the next attempt is not before `retry_at`."""

    generation: int
    attempts: int
    retry_at: datetime.datetime


Key = tuple[str, str]


@dataclass
class Reconciler:
    api: KubeApi
    settings: OperatorSettings
    metrics: OperatorMetrics
    emit: EventSink
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
    probes: ProbeLoop = field(default_factory=ProbeLoop)
    observers: dict[Key, RolloutObserver] = field(default_factory=dict)
    validated: dict[Key, tuple[tuple[str, int], list[FieldError]]] = field(default_factory=dict)
    """Validation errors per object and (uid, generation): the spec cannot change without a new generation."""
    backoffs: dict[Key, Backoff] = field(default_factory=dict)
    secured: set[Identity] = field(default_factory=set)
    """SLMDeployments whose ServiceAccount and Ray token Secret exist (see `slm_operator.security`)."""
    _locks: dict[Key, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _wakers: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="slm-wake")
    )
    _pending_wakes: set[Key] = field(default_factory=set)
    echoes: dict[Key, tuple[str, Any]] = field(default_factory=dict)
    """Per object, the RayService its last finished pass wrote: (resourceVersion written, the RayService
    status that pass decided on). A watch event of exactly that is our own write coming back."""
    status_written: dict[Key, str] = field(default_factory=dict)
    """Per object, the resourceVersion our last status write gave it: a trigger's body at exactly that
    version holds everything we decided, so the pass need not read the object again."""

    def reconcile(self, body: dict[str, Any]) -> Phase:
        """One pass over the object as it is now: the trigger's body if it holds our last write, else the
        object read again (a body may predate the status the previous pass wrote). kopf runs watch
        handlers, timers and the RayService handler concurrently: passes over one SLMDeployment are
        serialized here. Raises `RetryLaterError` when the RayService cannot be written, `ConflictError`
        when the object keeps changing under our status writes."""
        key: Key = (body["metadata"]["namespace"], body["metadata"]["name"])
        with self._lock_for(key):
            return self._reconcile_locked(key, body if self._holds_our_writes(key, body) else None)

    def rayservice_changed(self, namespace: str, owner: str, rayservice: dict[str, Any]) -> None:
        """A watch event of the RayService of SLMDeployment `owner`: a pass, unless the event is the echo
        of the write of our last finished pass (nothing in it that pass did not already decide on). Checked
        under the object's lock, so the echo of a pass still running is recognised once it finishes."""
        key: Key = (namespace, owner)
        with self._lock_for(key):
            if self.echoes.get(key) == _written_and_decided(rayservice):
                return
            self._reconcile_locked(key)

    def _holds_our_writes(self, key: Key, body: dict[str, Any]) -> bool:
        """Whether `body` (a watch event's or a timer's) is recent enough to decide on: it is at the version
        our last status write left, or it is a new object with no status that we never wrote one for. Any
        later write by someone else makes our conditional status write fail with 409, and we re-read."""
        version = body["metadata"].get("resourceVersion")
        if version is None:
            return False
        written = self.status_written.get(key)
        return written == version if written is not None else not body.get("status")

    def _reconcile_locked(self, key: Key, current: dict[str, Any] | None = None) -> Phase:
        namespace, name = key
        for _ in range(self.settings.conflict_retries + 1):
            try:
                fresh = current if current is not None else self.api.get_deployment(namespace, name)
            except NotFoundError:  # deleted meanwhile: nothing to do
                return Phase.PENDING
            current = None
            try:
                return self._pass(fresh)
            except StatusConflictError:
                log.info("SLMDeployment %s/%s changed while we wrote its status; re-reading", namespace, name)
        raise ConflictError(f"SLMDeployment {namespace}/{name} kept changing under our status writes", 409)

    def _pass(self, body: dict[str, Any]) -> Phase:
        meta = body["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        generation, previous, now = int(meta.get("generation") or 1), _current_status(body), self.clock()
        errors = self._spec_errors(body)
        if errors:
            return self._write_status(
                body, previous, build_invalid_status(previous, [str(e) for e in errors], generation, now)
            )
        deployment = SLMDeployment.model_validate(apply_defaults(_without_status(body), slm_validator().schema))
        observer = self._observer(key)
        observer.sync(generation)
        self._wait_out_backoff(key, generation, now)
        # observe (an object with no status has no RayService of ours yet; if one is there, its create
        # fails with 409 and `ensure_rayservice` reads it)
        existing = None if previous is None else self.api.get_rayservice(*key)
        observation = gather_observation(deployment, previous, existing, observer, self.settings, now)
        # decide
        settings = RolloutSettings(min_step_requests=self.settings.min_step_requests, prices=self.settings.prices)
        decision = decide(deployment.spec, previous, observation, generation=generation, now=now, settings=settings)
        cluster = plan_deployment_cluster(deployment, decision.status, existing, now=now, generation=generation)
        status = _with_serving_details(cluster.status, existing, *key)
        # apply
        ensure_security_objects(self.api, self.settings, deployment, self.secured, new=previous is None)
        try:
            written = ensure_rayservice(
                self.api,
                build_rayservice(
                    deployment.model_copy(update={"status": status}), pin_digest=pin_digest(self.settings, deployment)
                ),
                existing,
                now,
                self.settings.conflict_retries,
            )
        except (RejectedError, NotOursError) as error:
            return self._write_failure(
                body, previous, REJECTED if isinstance(error, RejectedError) else NOT_OURS, str(error), generation, now
            )
        self.backoffs.pop(key, None)
        if written.action in WRITTEN_EVENTS:
            reason, verb = WRITTEN_EVENTS[written.action]
            self.emit(body, "Normal", reason, f"{verb} RayService {key[1]}")
        posted = frozenset(a.reason for a in decision.actions if isinstance(a, EmitEvent))
        phase = self._write_status(body, previous, status, posted=posted)
        carry_out(
            (*decision.actions, *cluster.events), deployment.spec, observer, _ClusterShell(self, body, deployment)
        )
        if cluster.approval_used:
            self.api.remove_deployment_annotation(*key, constants.ANNOTATION_APPROVE_CLUSTER_UPGRADE)
        if written.action is not Action.UNCHANGED:  # recorded only once the whole pass is through
            self.echoes[key] = (written.rayservice["metadata"]["resourceVersion"], (existing or {}).get("status"))
        return phase

    # ------------------------------------------------------------ failures and backoff

    def _wait_out_backoff(self, key: Key, generation: int, now: datetime.datetime) -> None:
        """Within the backoff of a failed RayService write of this generation, a pass (a timer tick, a
        RayService event) does nothing; a new generation tries at once."""
        backoff = self.backoffs.get(key)
        if backoff is not None and backoff.generation == generation and now < backoff.retry_at:
            raise RetryLaterError(
                "waiting out the backoff of a failed RayService write", (backoff.retry_at - now).total_seconds()
            )

    def _write_failure(
        self,
        body: dict[str, Any],
        previous: SLMDeploymentStatus | None,
        reason: str,
        message: str,
        generation: int,
        now: datetime.datetime,
    ) -> Phase:
        """The RayService could not be written: the status keeps what was served and its phase (nothing of
        this pass's decision happened), says why in the Ready condition, and the next attempt waits longer."""
        key: Key = (body["metadata"]["namespace"], body["metadata"]["name"])
        base = previous or SLMDeploymentStatus()
        before = next((c for c in base.conditions if c.type == ConditionType.READY.value), None)
        conditions = set_condition(
            list(base.conditions),
            ConditionType.READY,
            "False",
            reason,
            message,
            now=format_time(now),
            generation=generation,
        )
        # The phase stays: it says what is served (and `decide` reads it); the condition says why not more.
        status = base.model_copy(
            update={"conditions": conditions, "message": message, "observed_generation": generation}
        )
        self._write_status(body, previous, status, events=False)
        if before is None or before.reason != reason or before.status != "False":
            self.emit(body, "Warning", reason, message)  # once per failure, not per retry
        last = self.backoffs.get(key)
        attempts = last.attempts + 1 if last is not None and last.generation == generation else 1
        delay = min(
            self.settings.failure_backoff_max_seconds, self.settings.failure_backoff_seconds * 2 ** (attempts - 1)
        )
        self.backoffs[key] = Backoff(generation, attempts, now + datetime.timedelta(seconds=delay))
        raise RetryLaterError(message, delay)

    # ------------------------------------------------------------ status

    def _write_status(
        self,
        body: dict[str, Any],
        previous: SLMDeploymentStatus | None,
        status: SLMDeploymentStatus,
        *,
        events: bool = True,
        posted: frozenset[str] = frozenset(),
    ) -> Phase:
        """Write `status` if it differs from what was read, conditional on the resourceVersion read; a
        change to Failed or Ready is posted as an Event unless the pass posts one of that reason."""
        meta = body["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        document = status_document(status)
        self.metrics.set_phase(*key, status.phase)
        self.metrics.set_replicas(*key, status.revisions)
        self.metrics.set_costs(*key, status)
        self.metrics.set_shadow(*key, status)
        if previous is not None and status_document(previous) == document:
            return status.phase
        try:
            version = self.api.patch_deployment_status(*key, document, resource_version=meta.get("resourceVersion"))
        except ConflictError as error:
            raise StatusConflictError(str(error)) from error
        if version is not None:
            self.status_written[key] = version
        event = phase_event(previous.phase if previous is not None else None, status, posted) if events else None
        if event is not None:
            self.emit(body, event.type, event.reason, event.message)
        return status.phase

    def _spec_errors(self, body: dict[str, Any]) -> list[FieldError]:
        """Validation of the object as the API server would do it, once per spec generation."""
        meta = body["metadata"]
        version = (str(meta.get("uid", "")), int(meta.get("generation") or 1))
        cached = self.validated.get((meta["namespace"], meta["name"]))
        if cached is not None and cached[0] == version:
            return cached[1]
        errors = validate_object(_without_status(body))
        self.validated[(meta["namespace"], meta["name"])] = (version, errors)
        return errors

    # ------------------------------------------------------------ memory per object

    def _lock_for(self, key: Key) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _observer(self, key: Key) -> RolloutObserver:
        with self._guard:
            observer = self.observers.get(key)
            if observer is None:
                observer = RolloutObserver(
                    self.probes,
                    on_result=lambda: self.wake(*key),
                    validation_deadline_s=self.settings.validation_deadline_seconds,
                )
                self.observers[key] = observer
            return observer

    def wake(self, namespace: str, name: str) -> None:
        """A probe finished: run a pass soon (on a thread of our own, never the probe loop's), once
        however many results arrive before it starts."""
        key = (namespace, name)
        with self._guard:
            if key in self._pending_wakes or key not in self.observers:
                return
            self._pending_wakes.add(key)
        self._wakers.submit(self._woken, key)

    def _woken(self, key: Key) -> None:
        with self._guard:
            self._pending_wakes.discard(key)
        try:
            self.reconcile({"metadata": {"namespace": key[0], "name": key[1]}})
        except (KubeError, RetryLaterError) as error:  # the next trigger or timer catches up
            log.info("pass after a probe result of %s/%s did not finish: %s", *key, error)

    def forget(self, namespace: str, name: str) -> None:
        """The SLMDeployment is gone: cancel its probes and drop what was kept in memory for it."""
        key = (namespace, name)
        with self._guard:
            observer = self.observers.pop(key, None)
            self._locks.pop(key, None)
        if observer is not None:
            observer.cancel()
        self.validated.pop(key, None)
        self.backoffs.pop(key, None)
        self.echoes.pop(key, None)
        self.status_written.pop(key, None)
        forget_security(self.secured, namespace, name)

    def close(self) -> None:
        """Stop every probe and the threads passes run on after a probe result."""
        self._wakers.shutdown(wait=False, cancel_futures=True)
        self.probes.close()


@dataclass
class _ClusterShell:
    """How the executor reaches the cluster for one SLMDeployment (see `executor.Shell`)."""

    reconciler: Reconciler
    body: dict[str, Any]
    deployment: SLMDeployment

    @property
    def _key(self) -> Key:
        return self.body["metadata"]["namespace"], self.body["metadata"]["name"]

    def router_url(self) -> str:
        namespace, name = self._key
        return self.reconciler.settings.router_url_template.format(name=name, namespace=namespace)

    def pin_token(self) -> str:
        return pin_token(self.reconciler.settings, self.deployment)

    def emit(self, type_: str, reason: str, message: str) -> None:
        self.reconciler.emit(self.body, type_, reason, message)

    def record_quality(self, action: RecordQuality) -> None:
        self.reconciler.metrics.record_quality(*self._key, action.revision, action.pass_rate)

    def clear_command(self) -> None:
        self.reconciler.api.remove_deployment_annotation(*self._key, constants.ANNOTATION_ROLLOUT_COMMAND)


def _with_serving_details(
    status: SLMDeploymentStatus, existing: dict[str, Any] | None, namespace: str, name: str
) -> SLMDeploymentStatus:
    """The endpoint, and what KubeRay says about failed applications (e.g. a model that cannot load)."""
    failure = failure_message(observe(existing), [r.name for r in status.revisions])
    message = f"{status.message}; {failure}" if failure and failure not in status.message else status.message
    return status.model_copy(update={"endpoint": endpoint_url(name, namespace), "message": message})


def _without_status(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "status"}


def _current_status(body: dict[str, Any]) -> SLMDeploymentStatus | None:
    """The status as stored, or None when absent or unreadable (e.g. written by an older operator)."""
    raw = body.get("status")
    if not raw:
        return None
    try:
        return SLMDeploymentStatus.model_validate(raw)
    except ValueError:
        log.warning("ignoring unreadable status of %s", body["metadata"].get("name"))
        return None


def _written_and_decided(rayservice: dict[str, Any]) -> tuple[str, Any]:
    """What `Reconciler.echoes` records, as a watch event of the RayService shows it."""
    return rayservice["metadata"]["resourceVersion"], rayservice.get("status")
