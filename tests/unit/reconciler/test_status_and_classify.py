"""Pure parts of the operator: what the RayService says, what status to write, create/update/unchanged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from slm_operator.api.models import Phase, SLMDeploymentStatus
from slm_operator.api.validation import parse_deployment
from slm_operator.builder.rayservice import build_rayservice
from slm_operator.rayservice_write import Action, NotOursError, build_update, classify, contains
from slm_operator.status import (
    build_invalid_status,
    estimate_ready_replicas,
    failure_message,
    observe,
    running_revisions,
    status_document,
)
from tests.conftest import EXAMPLES

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _rayservice(apps: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "tiny"}, "spec": {}}
    if apps is not None:
        body["status"] = {"activeServiceStatus": {"applicationStatuses": apps}}
    return body


@pytest.mark.parametrize(
    ("apps", "running", "failure"),
    [
        (None, set(), ""),
        ({}, set(), ""),
        ({"router": {"status": "RUNNING"}, "rev-a": {"status": "RUNNING"}}, {"a"}, ""),
        ({"router": {"status": "RUNNING"}, "rev-a": {"status": "DEPLOYING"}}, set(), ""),
        (
            {"router": {"status": "RUNNING"}, "rev-a": {"status": "DEPLOY_FAILED", "message": "no such model"}},
            set(),
            "rev-a: DEPLOY_FAILED no such model",
        ),
        ({"rev-b": {"status": "UNHEALTHY"}}, set(), ""),  # not a revision we serve
    ],
)
def test_observation_of_kuberay_application_statuses(
    apps: dict[str, Any] | None, running: set[str], failure: str
) -> None:
    observed = observe(_rayservice(apps))
    assert running_revisions(observed, ["a"]) == frozenset(running)
    assert failure_message(observed, ["a"]) == failure


def test_no_rayservice_observes_nothing() -> None:
    observed = observe(None)
    assert not observed.exists and observed.applications == {}


def test_ready_replicas_are_estimated_from_bounds_for_running_revisions() -> None:
    spec = parse_deployment(yaml.safe_load((EXAMPLES / "mistral-7b-awq.yaml").read_text())).spec
    status = SLMDeploymentStatus()
    (revision,) = estimate_ready_replicas(spec, status, frozenset()).keys()
    assert estimate_ready_replicas(spec, status, frozenset({revision})) == {revision: 2}  # minReplicas 2
    assert estimate_ready_replicas(spec, status, frozenset()) == {revision: 0}


def test_invalid_spec_status_names_the_errors_and_keeps_what_was_served() -> None:
    previous = SLMDeploymentStatus(phase=Phase.READY, stable_revision="abc")
    status = build_invalid_status(previous, ["spec.autoscaling.minReplicas: too big"], 3, NOW)
    assert status.phase == Phase.FAILED and status.stable_revision == "abc" and status.observed_generation == 3
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert "spec.autoscaling.minReplicas" in ready.message


def test_status_document_sends_nulls_for_fields_that_are_gone() -> None:
    document = status_document(SLMDeploymentStatus(stable_revision="abc"))
    assert document["stableRevision"] == "abc"
    assert document["canaryRevision"] is None and document["lastValidation"] is None  # removed by merge patch
    assert "conditions" in document


def _desired() -> dict[str, Any]:
    obj = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    obj["metadata"] |= {"namespace": "default", "uid": "u1"}
    return build_rayservice(parse_deployment(obj))


def test_classify_create_update_unchanged() -> None:
    desired = _desired()
    assert classify(desired, None) is Action.CREATE
    existing = {**desired, "metadata": {**desired["metadata"], "resourceVersion": "7"}, "status": {"x": 1}}
    assert classify(desired, existing) is Action.UNCHANGED
    changed = {**existing, "spec": {**existing["spec"], "serveConfigV2": "applications: []\n"}}
    assert classify(desired, changed) is Action.UPDATE


def test_a_rayservice_we_do_not_manage_is_never_taken_over() -> None:
    desired = _desired()
    foreign = {**desired, "metadata": {**desired["metadata"], "labels": {}}}
    with pytest.raises(NotOursError):
        classify(desired, foreign)


def test_update_keeps_others_labels_and_the_resource_version() -> None:
    desired = _desired()
    existing = {
        **desired,
        "metadata": {
            **desired["metadata"],
            "resourceVersion": "42",
            "labels": {**desired["metadata"]["labels"], "team": "ml"},
        },
        "spec": {"serveConfigV2": "old"},
    }
    body = build_update(desired, existing)
    assert body["metadata"]["resourceVersion"] == "42"
    assert body["metadata"]["labels"]["team"] == "ml"
    assert body["spec"] == desired["spec"]


@pytest.mark.parametrize(
    ("have", "want", "expected"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": [1, {"x": 1, "y": 2}]}, {"a": [1, {"x": 1}]}, True),
        ({"a": [1, 2]}, {"a": [1]}, False),
        ("x", "x", True),
        (None, {}, False),
    ],
)
def test_contains_allows_server_side_defaults_only(have: Any, want: Any, expected: bool) -> None:
    assert contains(have, want) is expected
