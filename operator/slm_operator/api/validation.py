"""Validate SLMDeployment objects offline exactly as the API server would.

Three steps, as in kube-apiserver: the structural schema (types, enums, bounds, patterns, unknown
fields as with kubectl's strict field validation), then defaulting, then the CEL
`x-kubernetes-validations` rules evaluated with cel-python. Used by `slm validate`, by the operator
(to set the InvalidSpec condition) and by the test API emulator (to answer 422).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Any

import celpy
import jsonschema
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from slm_operator.api.crd import build_openapi_schema
from slm_operator.api.models import SLMDeployment


@dataclass(frozen=True)
class FieldError:
    """One problem, at a field path such as `spec.rollout.steps[1].weight`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SchemaValidator:
    """Validates objects against one CRD version's openAPIV3Schema (compiled once)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._structural = jsonschema.Draft7Validator(to_json_schema(schema))

    def errors(self, obj: dict[str, Any]) -> list[FieldError]:
        """All errors in `obj` (empty when valid)."""
        errors = _structural_errors(obj, self._structural)
        if errors:
            return errors  # CEL rules assume well-typed input, as in the API server
        return list(_cel_errors(apply_defaults(obj, self.schema), self.schema, ""))


@cache
def slm_validator() -> SchemaValidator:
    return SchemaValidator(build_openapi_schema())


def validate_object(obj: dict[str, Any]) -> list[FieldError]:
    """All errors in one SLMDeployment object (empty when valid)."""
    return slm_validator().errors(obj)


def apply_defaults(obj: Any, schema: dict[str, Any]) -> Any:
    """A copy of `obj` with the schema's defaults filled in (the API server's defaulting)."""
    result = copy.deepcopy(obj)
    _default_in_place(result, schema)
    return result


def _default_in_place(obj: Any, schema: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in obj and "default" in sub:
                obj[name] = copy.deepcopy(sub["default"])
            if name in obj:
                _default_in_place(obj[name], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for value in obj.values():
                _default_in_place(value, extra)
    elif isinstance(obj, list) and "items" in schema:
        for item in obj:
            _default_in_place(item, schema["items"])


# ---------------------------------------------------------------- structural schema


def to_json_schema(node: Any, *, reject_unknown: bool = True) -> Any:
    """A Kubernetes structural schema (OpenAPI v3.0) → JSON Schema draft 7. With `reject_unknown`, fields
    the schema does not declare are errors (kubectl's strict field validation); without, they pass (the
    API server then prunes them)."""
    if isinstance(node, list):
        return [to_json_schema(n, reject_unknown=reject_unknown) for n in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: to_json_schema(v, reject_unknown=reject_unknown)
        for k, v in node.items()
        if not k.startswith("x-kubernetes-") and k != "properties"
    }
    if isinstance(node.get("properties"), dict):
        # `properties` maps field names, not schema keywords: a field may be named x-kubernetes-….
        out["properties"] = {k: to_json_schema(v, reject_unknown=reject_unknown) for k, v in node["properties"].items()}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if out.get(exclusive) is True:
            out[exclusive] = out.pop(bound)
        elif exclusive in out:
            del out[exclusive]
    if reject_unknown and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if "metadata" in out.get("properties", {}):
        out["properties"]["metadata"] = {"type": "object"}
    return out


def _structural_errors(obj: dict[str, Any], validator: jsonschema.Draft7Validator) -> list[FieldError]:
    errors = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = format_path(error.absolute_path)
        if error.validator == "required":
            missing = error.message.split("'")[1]
            errors.append(FieldError(_join(path, missing), "Required value"))
        elif error.validator == "additionalProperties":
            for name in _unexpected(error):
                errors.append(FieldError(_join(path, name), "unknown field"))
        else:
            errors.append(FieldError(path or "<root>", error.message))
    return errors


def _unexpected(error: jsonschema.ValidationError) -> list[str]:
    allowed = set(error.schema.get("properties", {}))
    return sorted(k for k in error.instance if k not in allowed)


def format_path(parts: Any) -> str:
    path = ""
    for part in parts:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    return path


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ---------------------------------------------------------------- CEL rules


def _is_sorted(values: celtypes.ListType) -> celtypes.BoolType:
    """Kubernetes' CEL list extension `isSorted()`."""
    items: list[Any] = list(values)
    return celtypes.BoolType(all(a <= b for a, b in pairwise(items)))


_K8S_FUNCTIONS: dict[str, Callable[..., Any]] = {"isSorted": _is_sorted}


@cache
def _compiled(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=_K8S_FUNCTIONS)


def _cel_errors(obj: Any, schema: dict[str, Any], path: str) -> Iterator[FieldError]:
    rules = schema.get("x-kubernetes-validations", ())
    activation = {"self": json_to_cel(obj)} if rules else {}
    for validation in rules:
        rule, message = validation["rule"], validation.get("message", f"failed rule: {validation['rule']}")
        where = path + validation.get("fieldPath", "")
        try:
            result = _compiled(rule).evaluate(activation)
        except CELEvalError as error:
            yield FieldError(where or "<root>", f"rule {rule!r} could not be evaluated: {error}")
            continue
        if isinstance(result, CELEvalError):
            yield FieldError(where or "<root>", f"rule {rule!r} could not be evaluated: {result}")
        elif not bool(result):
            yield FieldError(where or "<root>", message)
    if isinstance(obj, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in obj:
                yield from _cel_errors(obj[name], sub, _join(path, name))
    elif isinstance(obj, list) and "items" in schema:
        for index, item in enumerate(obj):
            yield from _cel_errors(item, schema["items"], f"{path}[{index}]")


class InvalidSpecError(ValueError):
    """An SLMDeployment that the API server would reject; `errors` name the fields."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


def parse_deployment(obj: dict[str, Any]) -> SLMDeployment:
    """Validate like the API server, then parse (with defaults) into the typed model."""
    errors = validate_object(obj)
    if errors:
        raise InvalidSpecError(errors)
    return SLMDeployment.model_validate(apply_defaults(obj, slm_validator().schema))
