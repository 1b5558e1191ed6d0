"""The API reference in Markdown, generated from the CRD's openAPIV3Schema (pure).

`docs/api-reference.md` is this module's output, checked in; a test fails when they differ.
Regenerate with `python -m slm_operator.api.reference > docs/api-reference.md`.

One section per object of the schema (objects inside lists are named `field[]`), in schema order,
each with a table of its fields (type, default, constraints, description) and the CEL rules that
apply to it with their messages.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from slm_operator.api.crd import build_crd

HEADER = """\
<!-- Generated from the SLMDeployment CRD by `python -m slm_operator.api.reference > docs/api-reference.md`.
     Do not edit: change operator/slm_operator/api/models.py, run `make crd`, then regenerate. -->
"""

_VALIDATIONS = "x-kubernetes-validations"


@dataclass(frozen=True)
class Section:
    """One object of the schema: `path` is the field path from the top, e.g. `spec.rollout.steps[]`."""

    path: str
    schema: dict[str, Any]
    list_rules: tuple[tuple[str, dict[str, Any]], ...] = ()
    """CEL rules attached to list or scalar fields of this object: (field name, rule)."""


def build_reference(crd: dict[str, Any]) -> str:
    """The Markdown reference of the first (storage) version of `crd`."""
    names = crd["spec"]["names"]
    version = crd["spec"]["versions"][0]
    api_version = f"{crd['spec']['group']}/{version['name']}"
    root = version["schema"]["openAPIV3Schema"]
    sections = list(_sections("", root))
    lines = [
        HEADER,
        f"# API reference: {names['kind']} ({api_version})",
        "",
        _one_line(root.get("description", "")),
        "",
        f"Short name `{', '.join(names.get('shortNames', []))}`, scope {crd['spec']['scope']}, "
        f"status subresource {'on' if 'status' in version.get('subresources', {}) else 'off'}. "
        "Defaults are filled in by the API server (and by `slm validate`); "
        "CEL rules are checked by the API server (Kubernetes 1.28+) and by `slm validate`.",
        "",
        "## Validation layers",
        "",
        "Every error is reported at once with its field path, in the API server's order:",
        "",
        "1. **Schema** (API server): the types, enums, bounds, patterns and lengths in the tables below; "
        "unknown fields are refused by kubectl's strict field validation.",
        "2. **CEL rules** (API server): the `Rules (CEL)` under each object below.",
        "3. **Admission webhook** (the operator; on by default in the chart, `webhook.enabled`; also "
        "`slm validate` and the operator's check of each new generation): what CEL cannot express. "
        "`metadata.name` is a DNS-1035 label "
        "of at most 47 characters (KubeRay names the RayCluster `<name>-xxxxx` and its `-serve-svc` Service "
        "after it, within 63); model and adapter sources are well-formed and normalised, without credentials "
        "(`file://` only with `slm serve`); `engineArgs` set nothing the operator sets and no credential, "
        "and `trust_remote_code` needs `model.trustRemoteCode`; quantities, the labels of the node selector "
        "and of `spec.network`'s selectors, and tolerations follow Kubernetes' rules (and a toleration "
        "names its key); `expect.regex` compiles under RE2 and `expect.jsonSchema` is a JSON Schema of at "
        "most 16 KiB as JSON. See docs/operations.md for what happens to writes while the operator is down.",
        "",
        "## Contents",
        "",
        *[f"- [`{s.path or names['kind']}`](#{_anchor(s.path or names['kind'])})" for s in sections],
        "",
        *_printer_columns(version.get("additionalPrinterColumns", [])),
    ]
    for section in sections:
        lines += _render_section(section, names["kind"])
    return "\n".join(lines).rstrip() + "\n"


def _sections(path: str, schema: dict[str, Any]) -> Iterator[Section]:
    """Every object with properties, parent before children, in schema order."""
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        return
    list_rules = tuple(
        (name, rule)
        for name, field in properties.items()
        if "properties" not in field
        for rule in field.get(_VALIDATIONS, [])
    )
    yield Section(path, schema, list_rules)
    for name, field in properties.items():
        child = _join(path, name)
        if "properties" in field:
            yield from _sections(child, field)
        elif "properties" in field.get("items", {}):
            yield from _sections(child + "[]", field["items"])


def _render_section(section: Section, kind: str) -> list[str]:
    schema = section.schema
    title = section.path or kind
    lines = [f"## `{title}`", ""]
    if schema.get("description") and section.path:
        lines += [_one_line(schema["description"]), ""]
    required = set(schema.get("required", []))
    lines += [
        "| Field | Type | Default | Constraints | Description |",
        "|---|---|---|---|---|",
    ]
    for name, field in schema["properties"].items():
        link = _child_link(section.path, name, field)
        cells = [
            f"[`{name}`](#{link})" if link else f"`{name}`",
            _type(field),
            "**required**" if name in required else _default(field),
            _constraints(field),
            _one_line(field.get("description", "")),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    rules = [("", rule) for rule in schema.get(_VALIDATIONS, [])] + list(section.list_rules)
    if rules:
        lines += ["Rules (CEL):", ""]
        lines += [_rule(field, rule) for field, rule in rules]
        lines.append("")
    return lines


def _printer_columns(columns: list[dict[str, Any]]) -> list[str]:
    if not columns:
        return []
    lines = [
        "## `kubectl get slmd` columns",
        "",
        "| Column | From | Type |",
        "|---|---|---|",
    ]
    lines += [f"| {c['name']} | `{c['jsonPath']}` | {c['type']} |" for c in columns]
    return [*lines, ""]


def _child_link(path: str, name: str, field: dict[str, Any]) -> str | None:
    child = _join(path, name)
    if "properties" in field:
        return _anchor(child)
    if "properties" in field.get("items", {}):
        return _anchor(child + "[]")
    return None


def _type(field: dict[str, Any]) -> str:
    if field.get("x-kubernetes-int-or-string"):
        return "integer or string"
    kind = field.get("type", "")
    if kind == "array":
        items = field.get("items", {})
        return f"list of {'objects' if 'properties' in items else _type(items)}"
    if kind == "object":
        values = field.get("additionalProperties")
        if isinstance(values, dict):
            return f"map of string to {_type(values)}"
        if field.get("x-kubernetes-preserve-unknown-fields"):
            return "object (free-form)"
        return "object"
    return str(kind)


def _default(field: dict[str, Any]) -> str:
    if "default" not in field:
        return ""
    value = field["default"]
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
    return f"`{text}`"


def _constraints(field: dict[str, Any]) -> str:
    parts: list[str] = []
    if "enum" in field:
        parts.append("one of " + ", ".join(f"`{v}`" for v in field["enum"]))
    parts += _bounds(field, "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", unit="")
    parts += _bounds(field, "minLength", "maxLength", unit="length ")
    parts += _bounds(field, "minItems", "maxItems", unit="items ")
    if "pattern" in field:
        parts.append(f"matches `{field['pattern']}`")
    if field.get("x-kubernetes-list-type") == "map":
        keys = ", ".join(field.get("x-kubernetes-list-map-keys", []))
        parts.append(f"one entry per `{keys}`")
    return "; ".join(parts)


def _bounds(
    field: dict[str, Any], low: str, high: str, low_open: str = "", high_open: str = "", *, unit: str
) -> list[str]:
    parts = []
    if low in field:
        parts.append(f"{unit}{'>' if field.get(low_open) else '≥'} {field[low]}")
    if high in field:
        parts.append(f"{unit}{'<' if field.get(high_open) else '≤'} {field[high]}")
    return parts


def _rule(field: str, rule: dict[str, Any]) -> str:
    where = rule.get("fieldPath") or (f".{field}" if field else "")
    on = f" (reported on `{where}`)" if where else ""
    return f"- {rule['message']}{on}: `{rule['rule']}`"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _anchor(title: str) -> str:
    """The anchor a code host (GitHub, GitLab) gives a heading: lower case, punctuation dropped."""
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    """Table cells: pipes escaped (also inside code spans, as GitHub-flavoured Markdown requires)."""
    return text.replace("|", "\\|")


def main() -> None:
    sys.stdout.write(build_reference(build_crd()))


if __name__ == "__main__":
    main()
