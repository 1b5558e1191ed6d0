"""What the API server does with a CRD's structural schema, as pure functions.

- `crd_resources`: the served versions of a CustomResourceDefinition as `ResourceDef`s (discovery
  names, scope, subresources, printer columns, schema).
- `validate`: openAPIV3Schema → JSON Schema → field errors with dotted paths (`spec.model.source`),
  as the API server reports them in a 422. CEL rules are not evaluated here; a resource can carry
  a stronger validator (the SLMDeployment one uses the project's own `validate_object`).
- `prune` and `apply_defaults`: unknown fields are dropped and `default`s filled in on every write,
  as a real API server does for structural schemas.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from slm_operator.api.validation import to_json_schema

Validator = Callable[[dict[str, Any]], list[str]]
"""Returns messages `path: message` for an object; empty when valid."""


@dataclass(frozen=True)
class ResourceDef:
    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    printer_columns: tuple[dict[str, Any], ...] = ()
    schema: dict[str, Any] | None = None
    custom: bool = True
    """Custom resources reject strategic-merge patches (415) and need resourceVersion on PUT."""
    validators: list[Validator] = field(default_factory=list, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """`group/version/plural`, or `version/plural` for the core group."""
        return f"{self.api_version}/{self.plural}"


def crd_resources(crd: dict[str, Any]) -> list[ResourceDef]:
    spec = crd["spec"]
    names = spec["names"]
    out = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        resource = ResourceDef(
            group=spec["group"],
            version=version["name"],
            plural=names["plural"],
            kind=names["kind"],
            singular=names.get("singular", names["kind"].lower()),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=tuple(names.get("shortNames", ())),
            categories=tuple(names.get("categories", ())),
            status_subresource="status" in (version.get("subresources") or {}),
            printer_columns=tuple(version.get("additionalPrinterColumns", ())),
            schema=schema,
        )
        if schema is not None:
            resource.validators.append(schema_validator(schema))
        out.append(resource)
    return out


def schema_validator(schema: dict[str, Any]) -> Validator:
    checker = jsonschema.Draft7Validator(to_json_schema(schema, reject_unknown=False))

    def validate(obj: dict[str, Any]) -> list[str]:
        errors = sorted(checker.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        return [_cause(e) for e in errors]

    return validate


def _cause(error: jsonschema.ValidationError) -> str:
    """The API server's wording: `spec.x: Required value`, `spec.y: Invalid value: …`."""
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = re.match(r"^'([^']+)'", error.message)
        return f"{_dotted([*path, missing[1] if missing else '?'])}: Required value"
    return f"{_dotted(path)}: Invalid value: {error.message}"


def _dotted(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def prune(obj: Any, schema: dict[str, Any] | None, path: str = "") -> tuple[Any, list[str]]:
    """Drop fields the schema does not declare; returns (pruned object, dropped field paths)."""
    if schema is None or (schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema):
        return obj, []
    dropped: list[str] = []
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and not isinstance(extra, dict):
            return obj, []
        out = {}
        for key, value in obj.items():
            sub = props.get(key) if props is not None else extra
            sub_path = f"{path}.{key}" if path else key
            if sub is None:
                if path in ("", "metadata") and key in ("apiVersion", "kind", "metadata"):
                    out[key] = value
                elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                    dropped.append(sub_path)
                else:
                    out[key] = value
                continue
            out[key], more = prune(value, sub, sub_path)
            dropped += more
        return out, dropped
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        items = []
        for i, value in enumerate(obj):
            pruned, more = prune(value, schema["items"], f"{path}[{i}]")
            items.append(pruned)
            dropped += more
        return items, dropped
    return obj, []


def apply_defaults(obj: Any, schema: dict[str, Any] | None) -> Any:
    """Fill in `default`s of absent properties, recursively (structural defaulting)."""
    if schema is None:
        return obj
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        out = dict(obj)
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(out[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and not props:
            out = {k: apply_defaults(v, extra) for k, v in out.items()}
        return out
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in obj]
    return obj
