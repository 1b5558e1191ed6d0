"""The emulator's built-in kinds refuse what the API server refuses (`tests/harness/emulator/builtin.py`)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.harness.emulator.builtin import validate_builtin

SECRET: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "s", "labels": {"slm.dev/name": "tiny"}},
    "data": {"auth_token": "YWJj"},
}
POLICY: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "p"},
    "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 8000}]}]},
}


def test_valid_objects_pass() -> None:
    assert validate_builtin(SECRET) == [] and validate_builtin(POLICY) == []


@pytest.mark.parametrize(
    ("base", "path", "value", "field"),
    [
        (SECRET, ("data", "auth_token"), "not base64!", "data[auth_token]"),
        (SECRET, ("data", "bad key/"), "YWJj", "data[bad key/]"),
        (SECRET, ("metadata", "labels", "slm.dev/name"), "no spaces allowed", "metadata.labels"),
        (SECRET, ("stringdata",), {}, "<root>"),  # unknown field (camelCase matters)
        (POLICY, ("spec", "ingress", 0, "ports", 0, "port"), 70000, "spec.ingress[0].ports[0].port"),
        (POLICY, ("spec", "ingress", 0, "ports", 0, "protocol"), "HTTP", "spec.ingress[0].ports[0].protocol"),
        (POLICY, ("spec", "podselector"), {}, "spec"),
    ],
)
def test_invalid_objects_are_refused_naming_the_field(
    base: dict[str, Any], path: tuple[Any, ...], value: Any, field: str
) -> None:
    obj = copy.deepcopy(base)
    target = obj
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    causes = validate_builtin(obj)
    assert any(c.startswith(field) for c in causes), causes
