"""`docs/api-reference.md` is generated from the CRD schema; the checked-in copy must be current and
say what the schema says."""

from __future__ import annotations

from typing import Any

import pytest

from slm_operator.api import crd
from slm_operator.api.reference import build_reference
from tests.conftest import REPO_ROOT

REFERENCE = REPO_ROOT / "docs" / "api-reference.md"
REGENERATE = "run `python -m slm_operator.api.reference > docs/api-reference.md` (after `make crd`)"


def test_checked_in_reference_is_the_generated_one() -> None:
    assert REFERENCE.read_text() == build_reference(crd.build_crd()), REGENERATE


def _fields(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, sub in node.get("properties", {}).items():
        found.append((f"{path}.{name}" if path else name, sub))
        found += _fields(sub, f"{path}.{name}" if path else name)
        if "properties" in sub.get("items", {}):
            found += _fields(sub["items"], f"{path}.{name}[]" if path else f"{name}[]")
    return found


SPEC_FIELDS = _fields(crd.build_openapi_schema()["properties"]["spec"], "spec")


@pytest.mark.parametrize(("path", "field"), SPEC_FIELDS, ids=[p for p, _ in SPEC_FIELDS])
def test_every_spec_field_is_documented_with_its_description(path: str, field: dict[str, Any]) -> None:
    """Each field has a row in its object's section, carrying its description."""
    reference = build_reference(crd.build_crd())
    parent, name = path.rsplit(".", 1)
    section = reference.split(f"## `{parent}`\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith((f"| `{name}` ", f"| [`{name}`]"))]
    assert len(rows) == 1, f"{path} has no row in section {parent}"
    assert " ".join(field["description"].split()).replace("|", "\\|") in rows[0]


def test_every_cel_rule_is_listed_with_its_message() -> None:
    reference = build_reference(crd.build_crd())
    rules = [rule for _, node in SPEC_FIELDS for rule in node.get("x-kubernetes-validations", [])]
    rules += crd.build_openapi_schema()["properties"]["spec"]["x-kubernetes-validations"]
    assert len(rules) >= 8
    for rule in rules:
        assert f"{rule['message']}" in reference
        assert f"`{rule['rule']}`" in reference


@pytest.mark.parametrize(
    ("field", "row_part"),
    [
        ({"type": "integer", "minimum": 0, "maximum": 16, "default": 1}, "| integer | `1` | ≥ 0; ≤ 16 |"),
        ({"type": "number", "minimum": 0, "exclusiveMinimum": True, "default": 4.0}, "| number | `4.0` | > 0 |"),
        ({"type": "string", "enum": ["a", "b"]}, "| string |  | one of `a`, `b` |"),
        ({"x-kubernetes-int-or-string": True, "default": "4"}, "| integer or string | `4` |  |"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "| map of string to string |"),
        ({"type": "object", "x-kubernetes-preserve-unknown-fields": True}, "| object (free-form) |"),
        ({"type": "string", "pattern": "^(a|b)$"}, "| matches `^(a\\|b)$` |"),
        ({"type": "array", "items": {"type": "string"}, "maxItems": 3}, "| list of string |  | items ≤ 3 |"),
    ],
)
def test_field_rows(field: dict[str, Any], row_part: str) -> None:
    """Types, defaults and constraints as a reader expects them (pipes escaped for the table)."""
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"f": field}}}}
    fake = {
        "spec": {
            "group": "example.dev",
            "scope": "Namespaced",
            "names": {"kind": "Thing", "shortNames": ["th"]},
            "versions": [{"name": "v1", "schema": {"openAPIV3Schema": schema}}],
        }
    }
    row = next(line for line in build_reference(fake).splitlines() if line.startswith("| `f` |"))
    assert row_part in row
