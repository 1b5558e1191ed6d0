"""The local shell of the rollout state machine: `slm serve FILE` on one machine, no Kubernetes.

Each pass re-reads FILE (an edit that changes the revision starts a rollout, exactly as a new spec
generation does in a cluster), observes the local Serve applications, asks the pure
`rollout.decide` what to do and carries out its actions against the local Ray Serve: the same
builder, the same state machine and the same probes as the operator.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import yaml
from rich.console import Console

from slm_operator.api.models import (
    AdapterVersionStatus,
    ConditionType,
    Phase,
    SLMDeployment,
    SLMDeploymentSpec,
    SLMDeploymentStatus,
)
from slm_operator.api.validation import InvalidSpecError, parse_deployment
from slm_operator.builder.serve_config import build_serve_config, build_shadow_config
from slm_operator.canary_pin import PinKey
from slm_operator.executor import carry_out
from slm_operator.observer import ProbeLoop, RolloutObserver
from slm_operator.rollout.actions import RecordQuality
from slm_operator.rollout.conditions import find_condition
from slm_operator.rollout.decide import Observation, RolloutSettings, decide
from slm_operator.rollout.working import Reason
from slm_operator.routes import DEFAULT_ROUTES_SETTLE_SECONDS, is_routes_settled
from slm_operator.serve_details import read_revisions, read_start_failures
from slm_serving.config import ROUTER_APP_NAME, FrontEnd, ShadowConfig
from slm_serving.local import LocalServe, LocalServeError


@dataclass(frozen=True)
class LocalEvent:
    """What `kubectl describe` would list as an Event, for the local console and tests."""

    time: datetime
    type: str
    reason: str
    message: str


EventSink = Callable[[LocalEvent], None]


@dataclass
class EmbeddedRollout:
    """One SLMDeployment file served by a `LocalServe`, rolled out by the shared state machine."""

    path: Path
    local: LocalServe
    on_event: EventSink = lambda event: None
    settings: RolloutSettings = field(default_factory=RolloutSettings)
    has_gpu: bool = False
    spec: SLMDeploymentSpec | None = None
    generation: int = 0
    status: SLMDeploymentStatus | None = None
    events: list[LocalEvent] = field(default_factory=list)
    file_error: str | None = None
    peak_replicas: int = 0
    """Most engine replicas running at once, all revisions together (rollout cost)."""
    _applied: _Served | None = None
    _applied_at: float = 0.0
    _last_error: str | None = None
    routes_settle_seconds: float = DEFAULT_ROUTES_SETTLE_SECONDS
    probes: ProbeLoop = field(default_factory=ProbeLoop)
    observer: RolloutObserver = field(init=False)
    pin_key: PinKey = field(default_factory=PinKey.random)
    """This process's key for the canary pin token (one process: no need to keep it)."""

    def __post_init__(self) -> None:
        self.observer = RolloutObserver(self.probes)

    def close(self) -> None:
        """Cancel the probes still running."""
        self.probes.close()

    def reload(self) -> bool:
        """Re-read the file; a changed spec is a new generation. Invalid edits are reported and ignored."""
        try:
            deployment = _load(self.path)
        except (OSError, yaml.YAMLError, InvalidSpecError) as error:
            if str(error) != self.file_error:
                self.file_error = str(error)
                self._emit("Warning", "InvalidSpec", f"{self.path}: {error}; still serving the last valid spec")
            return False
        self.file_error = None
        spec = fit_to_machine(deployment.spec, has_gpu=self.has_gpu)
        if self.spec is None or spec != self.spec:
            self.spec = spec
            self.generation += 1
            return True
        return False

    def step(self, now: datetime | None = None) -> None:
        """One pass: read, observe, decide, act. A pass whose calls to the local Serve fail is skipped
        (reported once) and the next one starts over: the state lives in `status`, not in the pass."""
        self.reload()
        if self.spec is None:
            raise ValueError(self.file_error or f"{self.path}: no valid SLMDeployment")
        try:
            self._pass(now or datetime.now(UTC))
        except (httpx.HTTPError, LocalServeError) as error:
            message = f"{type(error).__name__}: {error}"
            if message != self._last_error:
                self._emit("Warning", "ServeUnavailable", f"{message}; retrying")
            self._last_error = message
        else:
            self._last_error = None

    def _pass(self, now: datetime) -> None:
        assert self.spec is not None
        decision = decide(
            self.spec,
            self.status,
            self._observe(),
            generation=self.generation,
            now=now,
            settings=self.settings,
        )
        self.status = decision.status
        self._converge()
        carry_out(decision.actions, self.spec, self.observer, _LocalShell(self))

    # ------------------------------------------------------------ observe

    def _observe(self) -> Observation:
        details = self.local.details()
        revisions = [r.name for r in self.status.revisions] if self.status else []
        replicas = read_revisions(details, revisions)
        self.peak_replicas = max(self.peak_replicas, sum(replicas.ready.values()))
        router = (details.get("applications") or {}).get(ROUTER_APP_NAME) or {}
        routes_settled = is_routes_settled(
            config_applied=self._applied == _served(self.spec, self.status),
            router_running=router.get("status") == "RUNNING",
            seconds_since_applied=time.monotonic() - self._applied_at,
            settle_seconds=self.routes_settle_seconds,
        )
        self.observer.sync(self.generation)
        validation, live = self.observer.take()
        return Observation(
            running=replicas.running,
            ready_replicas=replicas.ready,
            desired_replicas=replicas.desired,
            routes_settled=routes_settled,
            validation=validation,
            live=live,
            shadow=self.observer.latest_shadow(),
            start_failures=read_start_failures(details, revisions),
            adapters=self.observer.take_adapters(),
        )

    # ------------------------------------------------------------ act

    def _converge(self) -> None:
        """Level-triggered: Serve always gets the revisions and weights recorded in status."""
        assert self.spec is not None and self.status is not None
        wanted = _served(self.spec, self.status)
        if wanted != self._applied and self.status.revisions:
            config = build_serve_config(self.spec, self.status, pin_digest=self.pin_key.digest(*self.pin_identity()))
            self.local.apply(config, wait=False)
            self._applied, self._applied_at = wanted, time.monotonic()

    def pin_identity(self) -> tuple[str, str, str]:
        return ("local", str(self.path), "")

    def _emit(self, kind: str, reason: str, message: str) -> None:
        event = LocalEvent(datetime.now(UTC), kind, reason, message)
        self.events.append(event)
        self.on_event(event)


@dataclass
class _LocalShell:
    """How the executor reaches the local Ray Serve (see `executor.Shell`)."""

    rollout: EmbeddedRollout

    def router_url(self) -> str:
        return self.rollout.local.url

    def pin_token(self) -> str:
        return self.rollout.pin_key.token(*self.rollout.pin_identity())

    def emit(self, type_: str, reason: str, message: str) -> None:
        self.rollout._emit(type_, reason, message)

    def record_quality(self, action: RecordQuality) -> None:
        verdict = "passed" if action.passed else "FAILED"
        self.rollout._emit(
            "Normal" if action.passed else "Warning",
            "QualityCheck",
            f"{action.revision} {verdict} ({action.pass_rate:.0%} of golden prompts)",
        )

    def clear_command(self) -> None:
        """No command annotation locally."""


def fit_to_machine(spec: SLMDeploymentSpec, *, has_gpu: bool) -> SLMDeploymentSpec:
    """Without a GPU, replicas run on vLLM's CPU backend whatever the spec asks for. Every answer names
    the revision that served it (the local server listens on 127.0.0.1 only: its one user may know)."""
    spec = spec.model_copy(update={"router": spec.router.model_copy(update={"expose_revision": True})})
    if has_gpu or spec.resources.gpus_per_replica == 0:
        return spec
    return spec.model_copy(update={"resources": spec.resources.model_copy(update={"gpus_per_replica": 0})})


def has_nvidia_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True, check=False).returncode == 0


class StopSignals:
    """SIGINT and SIGTERM stop `slm serve` the same way: the first raises KeyboardInterrupt in the main
    thread (the one shutdown path, which stops every process it started); later ones are ignored
    while it shuts down, so a second signal cannot cut Ray's shutdown short. SIGINT counts even where
    it was inherited as ignored (a command started with `&` from a script). `ray.init` installs its
    own SIGTERM handler (`sys.exit`, which would skip `serve.shutdown` and leave agents behind when it
    lands in a cleanup): `install` again once Ray runs."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
            raise KeyboardInterrupt


def start_gave_up(status: SLMDeploymentStatus | None) -> str | None:
    """Why nothing will be served: Serve gave up starting the only revision (phase Failed with
    ReplicaStartFailed); None while anything is served or may still start."""
    if status is None or status.phase is not Phase.FAILED:
        return None
    degraded = find_condition(status.conditions, ConditionType.DEGRADED)
    if degraded is None or degraded.status != "True" or degraded.reason != Reason.START_FAILED:
        return None
    return degraded.message


def serve_file(
    path: Path, *, port: int, console: Console, front_end: FrontEnd = FrontEnd.HAPROXY, interval_s: float = 1.0
) -> int:
    """`slm serve`: serve FILE on localhost, rolling out every edit, until Ctrl-C or SIGTERM (exit
    status 0) or until Serve gives up starting the first revision (1, with the reason); then stop every
    process it started. The main thread wakes every `interval_s`: a Ctrl-C the kernel hands to one of
    Ray's threads is acted on only when the main thread runs Python code again."""
    gpu = has_nvidia_gpu()
    console.print(f"starting a local Ray ({'GPU' if gpu else 'CPU: vLLM CPU backend'}) for {path}")
    signals = StopSignals()
    signals.install()
    exit_code = 0
    # A signal while Ray starts ends quietly (outer suppress; LocalServe stops what it started); once
    # serving, the inner one lets the "shutting down" line print before LocalServe stops it all.
    try:
        with suppress(KeyboardInterrupt), LocalServe(port=port, front_end=front_end) as local:
            signals.install()  # ray.init replaced the SIGTERM handler
            rollout = EmbeddedRollout(path, local, on_event=lambda e: print_event(console, e), has_gpu=gpu)
            with closing(rollout), suppress(KeyboardInterrupt):
                console.print(f"OpenAI API at [bold]{local.url}/v1[/bold]; edit {path} to roll out a new revision")
                console.print("Ctrl-C stops")
                last = ""
                while True:
                    rollout.step()
                    line = summary_line(rollout.status)
                    if line != last:
                        console.print(line)
                        last = line
                    reason = start_gave_up(rollout.status)
                    if reason is not None:
                        console.print(f"[red]✗[/red] {reason}")
                        exit_code = 1
                        break
                    time.sleep(interval_s)
            console.print("shutting down")
    finally:
        signals.restore()
    console.print("stopped")
    return exit_code


def summary_line(status: SLMDeploymentStatus | None) -> str:
    """`kubectl get slmd`, as one line."""
    if status is None:
        return "Pending"
    weights = ", ".join(f"{r.name}({r.role}) {r.weight}%" for r in status.revisions)
    line = f"[bold]{status.phase.value}[/bold] {weights} — {status.message}"
    shadow = status.last_shadow
    if shadow is not None and shadow.revision == status.canary_revision:
        agreement = f"{shadow.agreement:.0%}" if shadow.agreement is not None else "-"
        line += (
            f"\n  shadow: {shadow.pairs} pairs, {agreement} agree, {shadow.canary_errors} canary errors, "
            f"{shadow.skipped} skipped ({shadow.outcome})"
        )
    cost = status.last_cost
    if cost is not None and cost.revision == status.canary_revision:
        figures = ", ".join(
            f"{c.role} {c.cost_per_million_output_tokens:.4g}"
            for c in cost.revisions
            if c.cost_per_million_output_tokens is not None
        )
        ratio = f"; ratio {cost.ratio:.2f}x" if cost.ratio is not None else ""
        line += f"\n  cost per million output tokens: {figures or 'no tokens yet'}{ratio} ({cost.outcome})"
    return line


def print_event(console: Console, event: LocalEvent) -> None:
    colour = "yellow" if event.type == "Warning" else "cyan"
    console.print(f"[{colour}]{event.reason}[/{colour}] {event.message}")


def _load(path: Path) -> SLMDeployment:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    if len(documents) != 1:
        raise yaml.YAMLError(f"expected one SLMDeployment, found {len(documents)} documents")
    return parse_deployment(documents[0], local=True)


_AdapterVersions = tuple[str, AdapterVersionStatus | None, AdapterVersionStatus | None]
_Served = tuple[tuple[tuple[str, int], ...], ShadowConfig | None, tuple[_AdapterVersions, ...]]


def _served(spec: SLMDeploymentSpec | None, status: SLMDeploymentStatus | None) -> _Served:
    """What the local Serve must run to match `status`: the revisions' weights, the router's shadow
    copies (a shadow phase starting or ending changes the serve config, not the weights) and the
    adapter rollouts (the versions every engine holds and their weights)."""
    weights = tuple((r.name, r.weight) for r in status.revisions) if status else ()
    adapters = tuple((a.name, a.stable, a.canary) for a in status.adapters) if status else ()
    return weights, build_shadow_config(spec, status) if spec is not None else None, adapters
