"""Prometheus metrics of the operator, in a registry of their own (one per running operator)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from slm_operator.api.models import Phase, RevisionStatus, SLMDeploymentStatus


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "slm_reconciles", "Reconciles of SLMDeployments, by result.", ["result"], registry=self.registry
        )
        self.errors = Counter(
            "slm_reconcile_errors", "Failed reconciles, by error kind.", ["kind"], registry=self.registry
        )
        self.duration = Histogram(
            "slm_reconcile_duration_seconds",
            "Time one reconcile takes.",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.phase = Gauge(
            "slm_deployment_phase",
            "1 for the current phase (rollout state) of each SLMDeployment.",
            ["namespace", "name", "phase"],
            registry=self.registry,
        )

        self.quality = Gauge(
            "slm_quality_check_pass_rate",
            "Share of golden prompts the serving revision passed at its last continuous quality check.",
            ["namespace", "name", "revision"],
            registry=self.registry,
        )

        self.replicas = Gauge(
            "slm_revision_replicas",
            "Engine replicas of each live revision: ready (serving) and desired (the autoscaler's target).",
            ["namespace", "name", "revision", "state"],
            registry=self.registry,
        )
        self._revisions: dict[tuple[str, str], set[str]] = {}

        self.cost_per_million = Gauge(
            "slm_revision_cost_per_million_output_tokens",
            "Cost per million output tokens of canary and stable over the current traffic step (status.lastCost).",
            ["namespace", "name", "revision", "role"],
            registry=self.registry,
        )
        self.accelerator_seconds = Gauge(
            "slm_revision_accelerator_seconds",
            "GPU-seconds (CPU-core-seconds for CPU revisions) of canary and stable over the current traffic step.",
            ["namespace", "name", "revision", "role"],
            registry=self.registry,
        )
        self.cost_ratio = Gauge(
            "slm_rollout_cost_ratio",
            "The canary's cost per output token over the stable's at equal traffic share (maxCostRatio's figure).",
            ["namespace", "name"],
            registry=self.registry,
        )
        self._costed: dict[tuple[str, str], set[tuple[str, str]]] = {}

        self.shadow_agreement = Gauge(
            "slm_rollout_shadow_agreement",
            "Share of compared pairs that agreed at the last shadow phase's last verdict (status.lastShadow).",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.shadow_pairs = Gauge(
            "slm_rollout_shadow_pairs",
            "Pairs the last shadow phase compared (status.lastShadow.pairs): how much the agreement rests on.",
            ["namespace", "name"],
            registry=self.registry,
        )

    def set_replicas(self, namespace: str, name: str, revisions: list[RevisionStatus]) -> None:
        """One ready and one desired series per live revision; a revision that is gone loses its series."""
        live = {r.name for r in revisions}
        for gone in self._revisions.pop((namespace, name), set()) - live:
            for state in ("ready", "desired"):
                with contextlib.suppress(KeyError):
                    self.replicas.remove(namespace, name, gone, state)
        for revision in revisions:
            self.replicas.labels(namespace, name, revision.name, "ready").set(revision.ready_replicas)
            if revision.desired_replicas is not None:
                self.replicas.labels(namespace, name, revision.name, "desired").set(revision.desired_replicas)
        if live:
            self._revisions[(namespace, name)] = live

    def set_costs(self, namespace: str, name: str, status: SLMDeploymentStatus | None) -> None:
        """Canary and stable series while the rollout `status.lastCost` describes is in progress;
        none otherwise (a finished rollout's figures stay in status only)."""
        cost = status.last_cost if status is not None else None
        if cost is not None and (status is None or status.canary_revision != cost.revision):
            cost = None
        shown: set[tuple[str, str]] = {(c.revision, c.role) for c in cost.revisions} if cost is not None else set()
        for gone in self._costed.pop((namespace, name), set()) - shown:
            for gauge in (self.cost_per_million, self.accelerator_seconds):
                with contextlib.suppress(KeyError):
                    gauge.remove(namespace, name, *gone)
        if cost is not None:
            for entry in cost.revisions:
                self.accelerator_seconds.labels(namespace, name, entry.revision, entry.role).set(
                    entry.accelerator_seconds
                )
                per_million = entry.cost_per_million_output_tokens
                if per_million is not None:
                    self.cost_per_million.labels(namespace, name, entry.revision, entry.role).set(per_million)
            self._costed[(namespace, name)] = shown
        if cost is not None and cost.ratio is not None:
            self.cost_ratio.labels(namespace, name).set(cost.ratio)
        else:
            with contextlib.suppress(KeyError):
                self.cost_ratio.remove(namespace, name)

    def set_shadow(self, namespace: str, name: str, status: SLMDeploymentStatus | None) -> None:
        """The last shadow phase's agreement and pairs, kept after the phase (like status.lastShadow);
        none before any pair, or once the deployment is gone (status None)."""
        shadow = status.last_shadow if status is not None else None
        if shadow is None or shadow.agreement is None:
            for gauge in (self.shadow_agreement, self.shadow_pairs):
                with contextlib.suppress(KeyError):
                    gauge.remove(namespace, name)
            return
        self.shadow_agreement.labels(namespace, name).set(shadow.agreement)
        self.shadow_pairs.labels(namespace, name).set(shadow.pairs)

    def record_quality(self, namespace: str, name: str, revision: str, pass_rate: float) -> None:
        self.quality.labels(namespace, name, revision).set(pass_rate)

    def set_phase(self, namespace: str, name: str, phase: Phase | None) -> None:
        """Exactly one phase series per deployment; none once it is gone (phase None)."""
        for other in Phase:
            if other != phase:
                with contextlib.suppress(KeyError):
                    self.phase.remove(namespace, name, other.value)
        if phase is not None:
            self.phase.labels(namespace, name, phase.value).set(1)

    def serve(self, port: int) -> None:
        """Expose `/metrics` on `port` (a daemon thread)."""
        start_http_server(port, registry=self.registry)
