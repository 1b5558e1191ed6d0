"""Generate the SLMDeployment CRD from the pydantic models (the models are the source of truth).

`crds/slm.dev_slmdeployments.yaml` is this module's output, checked in; a test fails when they differ.
Regenerate with `make crd`.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from slm_operator.api import models
from slm_operator.yamlio import dump_yaml

CRD_NAME = f"{models.PLURAL}.{models.GROUP}"
CRD_FILE_NAME = f"{models.GROUP}_{models.PLURAL}.yaml"

_DROPPED_KEYS = {"title", "$defs", "discriminator"}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.servedModelName"},
    {"name": "Stable", "type": "string", "jsonPath": ".status.stableRevision"},
    {"name": "Canary", "type": "string", "jsonPath": ".status.canaryRevision"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight", "description": "Canary traffic %"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_openapi_schema() -> dict[str, Any]:
    """The structural openAPIV3Schema of an SLMDeployment object."""
    spec = _model_schema(models.SLMDeploymentSpec)
    status = _model_schema(models.SLMDeploymentStatus, with_defaults=False)
    status["description"] = "Observed state, written by the operator only."
    return {
        "type": "object",
        "description": "SLMDeployment serves a small language model with vLLM on Ray Serve (KubeRay), "
        "with canary validation and progressive rollout of new revisions.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "slm.dev/v1alpha1"},
            "kind": {"type": "string", "description": "SLMDeployment"},
            "metadata": {"type": "object"},
            "spec": spec | {"description": "Desired state: the model, its resources and its rollout policy."},
            "status": status,
        },
    }


def build_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": models.KIND,
                "listKind": f"{models.KIND}List",
                "plural": models.PLURAL,
                "singular": models.SINGULAR,
                "shortNames": list(models.SHORT_NAMES),
                "categories": ["all", "slm"],
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": build_openapi_schema()},
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    header = "# Generated from operator/slm_operator/api/models.py by `make crd`. Do not edit.\n"
    return header + dump_yaml(build_crd())


class _WireDefaults(GenerateJsonSchema):
    """Also emits the defaults of `default_factory` fields, in wire (camelCase) form.

    A nested object defaults to `{}` so that the API server fills in its own fields' defaults even when
    the user leaves the whole object out (and CEL rules can rely on them).
    """

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return {}
        if isinstance(value, list):
            return [v.model_dump(mode="json", by_alias=True) if isinstance(v, BaseModel) else v for v in value]
        return value if value is not None else NoDefault


def _model_schema(model: type[BaseModel], *, with_defaults: bool = True) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_WireDefaults)
    defs = raw.get("$defs", {})
    return _to_structural(raw, defs, with_defaults=with_defaults)


def _to_structural(node: dict[str, Any], defs: dict[str, Any], *, with_defaults: bool) -> dict[str, Any]:
    """pydantic's JSON Schema (draft 2020-12) -> a Kubernetes structural schema (OpenAPI v3.0)."""
    node = _resolve_ref(node, defs)
    any_of = node.get("anyOf")
    if any_of is not None:
        node = _collapse_any_of(node, any_of, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or key in {"anyOf", "$ref", "allOf"}:
            continue
        if key == "properties":
            out["properties"] = {
                name: _to_structural(sub, defs, with_defaults=with_defaults) for name, sub in value.items()
            }
        elif key == "items":
            out["items"] = _to_structural(value, defs, with_defaults=with_defaults)
        elif key == "additionalProperties" and isinstance(value, dict):
            out["additionalProperties"] = _to_structural(value, defs, with_defaults=with_defaults)
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "const":
            out["enum"] = [value]
        elif key == "default" and (value is None or not with_defaults):
            continue
        else:
            out[key] = copy.deepcopy(value)
    if "properties" in out:
        out["type"] = "object"
        out.pop("additionalProperties", None)
    if (
        out.get("type") == "object"
        and "properties" not in out
        and not isinstance(out.get("additionalProperties"), dict)
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
        out.pop("additionalProperties", None)
    if out.get("type") == "object" and isinstance(out.get("additionalProperties"), dict):
        value_schema = out["additionalProperties"]
        if "type" not in value_schema and not value_schema.get("x-kubernetes-int-or-string"):
            out.pop("additionalProperties")
            out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _resolve_ref(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None and len(node.get("allOf", ())) == 1:
        ref = node["allOf"][0].get("$ref")
    if ref is None:
        return node
    target = defs[ref.rsplit("/", 1)[-1]]
    siblings = {k: v for k, v in node.items() if k not in {"$ref", "allOf"}}
    merged = _resolve_ref(target, defs) | siblings
    # Rules of the referenced model and of the field itself both apply.
    rules = target.get("x-kubernetes-validations", []) + siblings.get("x-kubernetes-validations", [])
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged


def _collapse_any_of(node: dict[str, Any], any_of: list[dict[str, Any]], defs: dict[str, Any]) -> dict[str, Any]:
    """Optional fields (X | None) become X; str | int becomes int-or-string; arbitrary JSON is left open."""
    branches = [_resolve_ref(b, defs) for b in any_of if b.get("type") != "null"]
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    types = {b.get("type") for b in branches}
    if len(branches) == 1:
        return branches[0] | rest
    if types == {"string", "integer"}:
        # Kubernetes' int-or-string: the string branch's pattern and length still apply to strings.
        string = next(b for b in branches if b.get("type") == "string")
        kept = {k: v for k, v in string.items() if k in ("pattern", "maxLength")}
        return rest | kept | {"x-kubernetes-int-or-string": True}
    return rest | {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
