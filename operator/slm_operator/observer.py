"""Carries out the probing actions of `rollout.decide` and hands their results to the next pass.

One `RolloutObserver` per SLMDeployment, kept in memory by the shell (the operator or `slm serve`). A
result is handed over once; losing it (a restart) only means `decide` asks again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from slm_operator.api.models import SLMDeploymentSpec
from slm_operator.probes import fetch_samples, run_validation
from slm_operator.rollout.actions import ObserveMetrics, RunValidation
from slm_operator.rollout.gate import ValidationRun
from slm_operator.rollout.live import LiveSamples, RevisionSamples


@dataclass
class RolloutObserver:
    validation: ValidationRun | None = None
    live: LiveSamples | None = None
    cursor: tuple[str, str, str, int] | None = None
    """(canary, step start, router instance, sequence number): where the current step's samples begin."""
    transport: httpx.AsyncBaseTransport | None = None
    """How to reach the router's sample window (tests answer it in-process)."""

    def take(self) -> tuple[ValidationRun | None, LiveSamples | None]:
        """The results gathered since the last pass (each handed over once)."""
        taken = self.validation, self.live
        self.validation = self.live = None
        return taken

    def run_validation(self, router_url: str, spec: SLMDeploymentSpec, action: RunValidation) -> None:
        """Golden prompts through the router, pinned to the revision (and its baseline)."""
        self.validation = asyncio.run(
            run_validation(
                router_url,
                spec.rollout.validation.prompts,
                spec.model.served_model_name,
                action.revision,
                action.baseline,
            )
        )

    def observe_live(self, router_url: str, action: ObserveMetrics) -> None:
        """The router's requests of canary and stable since the step began. The first read of a step
        only takes the cursor (so it reports no traffic yet); so does the first read after the router
        restarted, whose window starts empty."""
        step = (action.canary, action.since)
        known = self.cursor if self.cursor is not None and self.cursor[:2] == step else None
        snapshot = asyncio.run(
            fetch_samples(router_url, known[3] if known is not None else None, transport=self.transport)
        )
        fresh = known is not None and known[2] == snapshot.instance
        if not fresh:
            self.cursor = (*step, snapshot.instance, 0 if known is not None else snapshot.last)
        revisions = snapshot.revisions if fresh else {}
        empty = RevisionSamples()
        self.live = LiveSamples(
            canary_revision=action.canary,
            canary=revisions.get(action.canary, empty),
            stable=revisions.get(action.stable, empty),
        )
