"""The one executor of `rollout.decide`'s actions, shared by the cluster shell (`reconcile.py`) and
`slm serve` (`embedded.py`): the shells differ only in how they reach Kubernetes or Ray (`Shell`).
Probes are only started here (`observer.RolloutObserver`); their results reach a later pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from slm_operator.api.models import SLMDeploymentSpec
from slm_operator.observer import RolloutObserver
from slm_operator.rollout.actions import (
    Action,
    ApplyRevisions,
    ClearCommand,
    EmitEvent,
    LoadAdapter,
    ObserveMetrics,
    ObserveShadow,
    RecordQuality,
    RunValidation,
    SetAdapterWeights,
    UnloadAdapter,
    ValidateAdapter,
)


class Shell(Protocol):
    def router_url(self) -> str:
        """Where golden prompts go (pinned to a revision through the router) and where its window of
        recent requests (`GET /slm/samples`) and its shadow counts (`GET /slm/shadow`) are read."""
        ...

    def pin_token(self) -> str:
        """The deployment's canary pin token (`slm_operator.canary_pin`): the proof the router asks of
        a pinned request and of a read of its sample window."""
        ...

    def emit(self, type_: str, reason: str, message: str) -> None: ...

    def record_quality(self, action: RecordQuality) -> None: ...

    def clear_command(self) -> None: ...


def carry_out(actions: Sequence[Action], spec: SLMDeploymentSpec, observer: RolloutObserver, shell: Shell) -> None:
    """Carry out `actions` in order. ApplyRevisions, SetAdapterWeights and UnloadAdapter need nothing
    here: every pass converges the served revisions to `status.revisions` and the adapter versions
    to `status.adapters` (level-triggered), which also covers restarts; LoadAdapter only reads which
    versions the engines hold, as loading follows the same way."""
    for action in actions:
        if isinstance(action, EmitEvent):
            shell.emit(action.type, action.reason, action.message)
        elif isinstance(action, RunValidation):
            observer.run_validation(shell.router_url(), spec, action, pin_token=shell.pin_token())
        elif isinstance(action, ObserveMetrics):
            if not observer.is_running("samples"):
                observer.observe_live(shell.router_url(), action, pin_token=shell.pin_token())
        elif isinstance(action, ObserveShadow):
            if not observer.is_running("shadow"):
                observer.observe_shadow(shell.router_url(), action, pin_token=shell.pin_token())
        elif isinstance(action, RecordQuality):
            shell.record_quality(action)
        elif isinstance(action, ClearCommand):
            shell.clear_command()
        elif isinstance(action, LoadAdapter):
            if not observer.is_running("adapters"):
                observer.observe_adapters(shell.router_url(), pin_token=shell.pin_token())
        elif isinstance(action, ValidateAdapter):
            observer.run_adapter_validation(shell.router_url(), spec, action, pin_token=shell.pin_token())
        else:
            assert isinstance(action, ApplyRevisions | UnloadAdapter | SetAdapterWeights)
