"""The CRD is generated from the pydantic models; the checked-in copies must match and be complete."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from slm_operator.api import crd, models
from tests.conftest import REPO_ROOT

CRD_PATH = REPO_ROOT / "crds" / crd.CRD_FILE_NAME


def test_checked_in_crd_is_the_generated_one() -> None:
    assert CRD_PATH.read_text() == crd.render_crd_yaml(), "run `make crd` after changing api/models.py"


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


SCHEMA = crd.build_openapi_schema()


@pytest.mark.parametrize(("path", "node"), list(_walk(SCHEMA, "")), ids=lambda v: v if isinstance(v, str) else "")
def test_every_field_is_structural_and_described(path: str, node: dict[str, Any]) -> None:
    """`kubectl explain` needs a description everywhere; the API server needs a type everywhere."""
    assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
    is_item = path.endswith(("{}", "[]"))  # explained by the list's or map's own description
    if path and not is_item and path != ".metadata":
        assert node.get("description"), f"{path} has no description"
    assert "anyOf" not in node and "$ref" not in node and "allOf" not in node, path


def test_crd_identity() -> None:
    document = crd.build_crd()
    spec = document["spec"]
    assert document["metadata"]["name"] == "slmdeployments.slm.dev"
    assert spec["group"] == "slm.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["slmd"] and spec["names"]["kind"] == "SLMDeployment"
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("column", crd.PRINTER_COLUMNS, ids=lambda c: c["name"])
def test_printer_columns_point_at_real_fields(column: dict[str, Any]) -> None:
    node: dict[str, Any] = SCHEMA
    for part in column["jsonPath"].lstrip(".").split("."):
        if part == "creationTimestamp":
            return
        node = node["properties"][part]
    assert column["type"] in {"string", "integer", "date"}
    assert node["type"] == column["type"] or (column["type"] == "string" and node["type"] == "string")


def test_nested_objects_default_to_empty_so_their_defaults_apply() -> None:
    spec = SCHEMA["properties"]["spec"]["properties"]
    assert spec["rollout"]["default"] == {}
    assert spec["rollout"]["properties"]["steps"]["default"][-1]["weight"] == 100
    assert "default" not in SCHEMA["properties"]["status"]["properties"]["phase"]


def test_cel_rules_sit_on_the_objects_they_check() -> None:
    spec = SCHEMA["properties"]["spec"]
    rules = {r["rule"] for r in spec["properties"]["autoscaling"]["x-kubernetes-validations"]}
    assert "self.minReplicas <= self.maxReplicas" in rules
    assert spec["x-kubernetes-validations"][0]["fieldPath"] == ".rollout.maxSurgeReplicas"


def test_crd_yaml_round_trips() -> None:
    assert yaml.safe_load(crd.render_crd_yaml()) == crd.build_crd()
    assert crd.build_crd()["spec"]["names"]["kind"] == models.KIND
