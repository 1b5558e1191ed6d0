"""The API emulator refuses every malformed object of the table as kube-apiserver (with the webhook)
would: 422, reason Invalid, one cause per error with its field path and the validator's message.
Every object is refused, so the tests share one emulator per module (checked after each test)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import kubernetes
import pytest

from slm_operator.api.validation import validate_object
from tests.fixtures.malformed import TABLE, Malformed
from tests.harness.cluster import SLMD
from tests.harness.emulator import EmulatorThread

ROUTED = {"wrong-version", "wrong-kind"}
"""apiVersion and kind choose the URL: kubectl's 'no matches for kind' never reaches the server."""
UNKNOWN_FIELDS = {"unknown-field", "unknown-top-level-spec-field"}
"""Refused by strict decoding (400) before validation, as kubectl's default `--validate=strict` makes it."""


@pytest.fixture
def k8s(
    module_api: EmulatorThread, module_k8s: kubernetes.client.CustomObjectsApi
) -> Iterator[kubernetes.client.CustomObjectsApi]:
    """The module's emulator; a test that got an object stored would change what the next ones see."""
    yield module_k8s
    assert module_api.objects("slmdeployments") == []


@pytest.mark.parametrize("case", [m for m in TABLE if m.id not in ROUTED | UNKNOWN_FIELDS], ids=lambda m: m.id)
def test_the_emulator_rejects_with_the_validators_messages(
    k8s: kubernetes.client.CustomObjectsApi, case: Malformed
) -> None:
    obj = case.build()
    with pytest.raises(kubernetes.client.ApiException) as refused:
        k8s.create_namespaced_custom_object(*SLMD, obj)
    status = json.loads(refused.value.body)
    assert (refused.value.status, status["reason"]) == (422, "Invalid")
    causes = status["details"]["causes"]
    expected = validate_object(obj)
    assert [(c["field"], c["message"]) for c in causes] == [(e.path, e.message) for e in expected]
    assert [c["field"] for c in causes] == list(case.paths)
    assert all(str(e) in status["message"] for e in expected)


@pytest.mark.parametrize("case", [m for m in TABLE if m.id in UNKNOWN_FIELDS], ids=lambda m: m.id)
def test_unknown_fields_are_refused_by_strict_decoding(
    k8s: kubernetes.client.CustomObjectsApi, case: Malformed
) -> None:
    with pytest.raises(kubernetes.client.ApiException) as refused:
        k8s.create_namespaced_custom_object(*SLMD, case.build(), field_validation="Strict")
    assert refused.value.status == 400
    assert json.loads(refused.value.body)["message"].endswith(f'strict decoding error: unknown field "{case.paths[0]}"')
    assert [str(e) for e in validate_object(case.build())] == [f'{case.paths[0]}: unknown field "{case.paths[0]}"']
