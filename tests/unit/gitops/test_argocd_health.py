"""The Argo CD health check `gitops/argocd/health.lua`, run by a real Lua 5.1 interpreter (lupa).

Argo CD runs health checks in gopher-lua (Lua 5.1) with the object as the global `obj` and takes the
table the chunk returns; these tests do the same with the cases in `health_cases.yaml`. They also keep
the Lua in step with the SLMDeployment status model and with the argocd-cm snippet in
`examples/gitops/argocd-application.yaml`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa.lua51 import LuaRuntime

from slm_operator.api.models import (
    Condition,
    ConditionType,
    Phase,
    SLMDeploymentStatus,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
HEALTH_LUA = REPO_ROOT / "gitops" / "argocd" / "health.lua"
ARGOCD_EXAMPLE = REPO_ROOT / "examples" / "gitops" / "argocd-application.yaml"
HEALTH_KEY = "resource.customizations.health.slm.dev_SLMDeployment"
CASES: list[dict[str, Any]] = yaml.safe_load((Path(__file__).parent / "health_cases.yaml").read_text())
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def assess(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) of the health check for one object, as Argo CD would compute them."""
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals()["obj"] = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return str(result["status"]), str(result["message"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_health(case: dict[str, Any]) -> None:
    status, message = assess(case["object"])
    assert status == case["status"], message
    assert case["message"] in message


def test_every_outcome_is_covered() -> None:
    assert {c["status"] for c in CASES} == {"Healthy", "Progressing", "Degraded"}


def status_object(status: SLMDeploymentStatus, generation: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "generation": generation},
        "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def condition(kind: ConditionType, value: str, message: str = "") -> Condition:
    return Condition(
        type=kind.value, status=value, reason="Test", message=message, last_transition_time="2026-11-26T10:00:00Z"
    )


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        (SLMDeploymentStatus(phase=Phase.PENDING, observed_generation=1), 1, "Progressing"),
        (
            SLMDeploymentStatus(
                phase=Phase.READY,
                observed_generation=1,
                stable_revision="aaa",
                conditions=[condition(ConditionType.READY, "True")],
            ),
            1,
            "Healthy",
        ),
        (
            SLMDeploymentStatus(
                phase=Phase.PROGRESSING, observed_generation=1, canary_revision="bbb", canary_weight=20
            ),
            1,
            "Progressing",
        ),
        (SLMDeploymentStatus(phase=Phase.PAUSED, observed_generation=1, canary_revision="bbb"), 1, "Progressing"),
        (
            SLMDeploymentStatus(
                phase=Phase.READY,
                observed_generation=1,
                conditions=[condition(ConditionType.DEGRADED, "True", "rolled back")],
            ),
            1,
            "Degraded",
        ),
        (SLMDeploymentStatus(phase=Phase.FAILED, observed_generation=1), 1, "Degraded"),
        (SLMDeploymentStatus(phase=Phase.READY, observed_generation=1, stable_revision="aaa"), 2, "Progressing"),
    ],
    ids=["pending", "ready", "canary", "paused", "degraded-condition", "failed", "generation-ahead"],
)
def test_health_of_statuses_the_operator_writes(status: SLMDeploymentStatus, generation: int, expected: str) -> None:
    """Status objects serialised by the operator's own model (camelCase, as stored in the cluster)."""
    assert assess(status_object(status, generation))[0] == expected


def test_every_phase_gets_an_argo_status() -> None:
    for phase in Phase:
        status, _ = assess(status_object(SLMDeploymentStatus(phase=phase, observed_generation=1), 1))
        assert status in ARGO_STATUSES, phase


def test_lua_reads_only_fields_the_status_model_has() -> None:
    fields = set(re.findall(r"\bstatus\.([a-zA-Z]+)", HEALTH_LUA.read_text()))
    aliases = {info.alias or name for name, info in SLMDeploymentStatus.model_fields.items()}
    assert fields, "expected the Lua to read status fields"
    assert fields <= aliases, sorted(fields - aliases)


def test_argocd_cm_snippet_is_the_lua_file() -> None:
    documents = list(yaml.safe_load_all(ARGOCD_EXAMPLE.read_text()))
    config_maps = [d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "argocd-cm"]
    assert len(config_maps) == 1
    assert config_maps[0]["data"][HEALTH_KEY] == HEALTH_LUA.read_text(), (
        f"copy {HEALTH_LUA.relative_to(REPO_ROOT)} into the argocd-cm snippet of {ARGOCD_EXAMPLE.name}"
    )
