"""Carries out the probing actions of `rollout.decide` and hands their results to the next pass.

One `RolloutObserver` per SLMDeployment, kept in memory by the shell (the operator or `slm serve`). A
result is handed over once; losing it (a restart) only means `decide` asks again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from slm_operator.api.models import SLMDeploymentSpec
from slm_operator.probes import RevisionCounters, run_validation, scrape_router_counters
from slm_operator.rollout.actions import ObserveMetrics, RunValidation
from slm_operator.rollout.gate import LiveMetrics, ValidationRun


@dataclass
class RolloutObserver:
    validation: ValidationRun | None = None
    live: LiveMetrics | None = None
    baselines: dict[tuple[str, str], dict[str, RevisionCounters]] = field(default_factory=dict)

    def take(self) -> tuple[ValidationRun | None, LiveMetrics | None]:
        """The results gathered since the last pass (each handed over once)."""
        taken = self.validation, self.live
        self.validation = self.live = None
        return taken

    def run_validation(
        self, router_url: str, spec: SLMDeploymentSpec, action: RunValidation, *, pin_token: str
    ) -> None:
        """Golden prompts through the router, pinned to the revision (and its baseline) with the
        deployment's pin token (`slm_serving.pins`)."""
        self.validation = asyncio.run(
            run_validation(
                router_url,
                spec.rollout.validation.prompts,
                spec.model.served_model_name,
                action.revision,
                action.baseline,
                pin_token=pin_token,
            )
        )

    def observe_live(self, metrics_urls: Sequence[str], action: ObserveMetrics) -> None:
        """Router traffic of canary and stable since the step began; the first call of a step takes the
        baseline (so it reports no traffic yet)."""
        now = asyncio.run(scrape_router_counters(metrics_urls))
        self.baselines = {k: v for k, v in self.baselines.items() if k[0] == action.canary}
        baseline = self.baselines.setdefault((action.canary, action.since), now)
        empty = RevisionCounters()
        self.live = LiveMetrics(
            canary_revision=action.canary,
            canary=now.get(action.canary, empty).minus(baseline.get(action.canary, empty)),
            stable=now.get(action.stable, empty).minus(baseline.get(action.stable, empty)),
        )
