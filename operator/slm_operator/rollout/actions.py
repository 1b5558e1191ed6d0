"""What `decide` asks its shell to do: typed, frozen, carried out in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from slm_operator.api.models import GoldenPrompt


@dataclass(frozen=True)
class ApplyRevisions:
    """Make the RayService serve exactly these revisions at these weights (stable first).

    Emitted when they change; the shell should also converge to `status.revisions` on every pass
    (level-triggered), so a crash between persisting the status and applying loses nothing.
    """

    weights: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class RunValidation:
    """Send the golden prompts to `revision` (pinned through the router) and, when given, to
    `baseline`; hand the outcome back as `Observation.validation` on a later pass."""

    revision: str
    baseline: str | None


@dataclass(frozen=True)
class ObserveMetrics:
    """Collect live per-revision metrics since `since` (RFC 3339) for `Observation.live`."""

    canary: str
    stable: str
    since: str


@dataclass(frozen=True)
class ObserveShadow:
    """Read the router's shadow counts of `canary` for the phase `epoch` (its start, RFC 3339) for
    `Observation.shadow`."""

    canary: str
    epoch: str


@dataclass(frozen=True)
class EmitEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class RecordQuality:
    """Publish the result of a quality check of a serving revision (a metric; traffic is not moved)."""

    revision: str
    passed: bool
    pass_rate: float


@dataclass(frozen=True)
class ClearCommand:
    """Remove the `slm.dev/rollout-command` annotation: it was acted upon or ignored."""


@dataclass(frozen=True)
class LoadAdapter:
    """Load `source` as `engine_adapter_name(name, version)` into every engine of the stable revision."""

    name: str
    version: str
    source: str


@dataclass(frozen=True)
class UnloadAdapter:
    """Remove one version of an adapter from every engine (after its weight went to 0)."""

    name: str
    version: str


@dataclass(frozen=True)
class ValidateAdapter:
    """Send the adapter's golden prompts to `version`, through the engines of
    `revision` (the stable one); hand the outcome back as
    `AdapterObservation.validation[engine_adapter_name(name, version)]` on a later pass. `baseline`:
    the version serving the adapter now, if any."""

    name: str
    version: str
    baseline: str | None
    revision: str
    prompts: tuple[GoldenPrompt, ...]


@dataclass(frozen=True)
class SetAdapterWeights:
    """Split the requests naming `name` between its versions (routers converge to this every pass)."""

    name: str
    weights: tuple[tuple[str, int], ...]


Action = (
    ApplyRevisions
    | RunValidation
    | ObserveMetrics
    | ObserveShadow
    | EmitEvent
    | RecordQuality
    | ClearCommand
    | LoadAdapter
    | UnloadAdapter
    | ValidateAdapter
    | SetAdapterWeights
)
