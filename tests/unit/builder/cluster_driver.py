"""The operator's pure chain for one SLMDeployment, pass by pass: `rollout.decide` → `cluster_plan`
→ the RayService builder, as `reconcile.py` runs it, with KubeRay's rules judging every RayService
(`tests.harness.kuberay.KubeRayRules`). Serve cannot run in a unit test: revisions are observed
RUNNING at once and the router takes its weights at once (`helpers.observe`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import yaml

from slm_operator.api.models import SLMDeployment, SLMDeploymentSpec, SLMDeploymentStatus
from slm_operator.builder.cluster_change import ClusterChange
from slm_operator.builder.cluster_plan import ClusterPlan, plan_cluster
from slm_operator.builder.rayservice import build_rayservice
from slm_operator.rollout.decide import decide
from slm_operator.rollout.gate import ValidationRun
from slm_operator.rollout.live import LiveSamples
from slm_operator.status import status_document
from tests.conftest import EXAMPLES
from tests.harness.kuberay import KubeRayRules
from tests.unit.rollout.helpers import SETTINGS, T0, observe


@dataclass
class Driver:
    document: dict[str, Any] = field(default_factory=lambda: yaml.safe_load((EXAMPLES / "tiny.yaml").read_text()))
    kuberay: KubeRayRules = field(default_factory=lambda: KubeRayRules("tiny"))
    status: SLMDeploymentStatus | None = None
    generation: int = 1
    approval: str | None = None
    now: datetime = T0
    declared_upgrades: int = 0
    rayservice: dict[str, Any] = field(default_factory=dict)
    plan: ClusterPlan | None = None

    @property
    def spec(self) -> dict[str, Any]:
        return self.document["spec"]  # type: ignore[no-any-return]

    def edited(self) -> None:
        self.generation += 1

    def restart(self) -> None:
        """What a new operator reads back: the status as written to the API."""
        if self.status is not None:
            document = yaml.safe_load(yaml.safe_dump(status_document(self.status)))
            self.status = SLMDeploymentStatus.model_validate(document)

    def step(
        self,
        *,
        validation: ValidationRun | None = None,
        live: LiveSamples | None = None,
        command: str | None = None,
    ) -> ClusterChange | None:
        """One reconcile pass; KubeRay's decision on the RayService it writes (None: no cluster change)."""
        self.now += timedelta(seconds=30)
        spec = SLMDeploymentSpec.model_validate(self.spec)
        seen = observe(self.status, validation=validation, live=live, command=command)
        decision = decide(spec, self.status, seen, generation=self.generation, now=self.now, settings=SETTINGS)
        self.plan = plan_cluster(
            spec,
            decision.status,
            name="tiny",
            approval=self.approval,
            kuberay_upgrading=False,
            now=self.now,
            generation=self.generation,
        )
        if self.plan.approval_used:
            self.approval = None
        self.status = self.plan.status
        body = {**self.document, "metadata": {"name": "tiny", "namespace": "default"}, "status": None}
        deployment = SLMDeployment.model_validate(body).model_copy(update={"status": self.status})
        self.rayservice = build_rayservice(deployment)
        change = self.kuberay.observe(self.rayservice)
        if (
            change is ClusterChange.NEW_CLUSTER
            and "slm.dev/cluster-upgrade" in self.rayservice["metadata"]["annotations"]
        ):
            self.declared_upgrades += 1
        return change

    def groups(self) -> list[str]:
        return [g["groupName"] for g in self.rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]]

    def replicas(self) -> list[int]:
        return [g["replicas"] for g in self.rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]]
