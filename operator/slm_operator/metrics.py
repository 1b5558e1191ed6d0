"""Prometheus metrics of the operator, in a registry of their own (one per running operator)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from slm_operator.api.models import Phase, RevisionStatus


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
