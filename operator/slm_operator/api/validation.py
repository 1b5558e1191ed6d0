"""Validate SLMDeployment objects offline exactly as the API server and the admission webhook would.

The layers, in kube-apiserver's order, every error of every layer reported at once with its field path:
1. the resource itself: apiVersion and kind (`no matches for kind …`: nothing else is checked then);
2. metadata.name as a DNS-1123 subdomain (ObjectMeta validation);
3. the structural schema: types, enums, bounds, patterns, lengths, unknown fields (kubectl's strict field
   validation), in the API server's wording; then defaulting;
4. the CEL `x-kubernetes-validations` rules (cel-python), skipped as the API server skips them when a
   type or enum error makes the object unfit for them;
5. the checks CEL cannot express (`slm_operator.api.checks`), which the admission webhook runs.
Used by `slm validate`, the admission webhook, the operator (InvalidSpec condition) and the API emulator.
The real API server calls the webhook only once 1-4 pass; here they all run so CI sees everything.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from functools import cache, lru_cache
from itertools import pairwise
from typing import Any

import celpy
import jsonschema
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from slm_operator.api.checks import FieldError, extra_errors, metadata_errors
from slm_operator.api.crd import build_openapi_schema
from slm_operator.api.models import API_VERSION, GROUP, KIND, SLMDeployment

__all__ = ["FieldError", "InvalidSpecError", "parse_deployment", "validate_object"]

UNCHECKED_RULES = (
    "Internal error: some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)
_BLOCKING = frozenset({"type", "enum"})
"""Schema errors after which the API server does not evaluate CEL rules (TypeInvalid, NotSupported)."""


class SchemaValidator:
    """Validates objects against one CRD version's openAPIV3Schema (compiled once)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._structural = jsonschema.Draft7Validator(to_json_schema(schema))

    def errors(self, obj: dict[str, Any]) -> list[FieldError]:
        """Schema errors, then CEL rule errors (empty when valid)."""
        structural = list(_structural_errors(obj, self._structural))
        if any(validator in _BLOCKING for validator, _ in structural):
            return [error for _, error in structural] + [FieldError("<root>", UNCHECKED_RULES)]
        rules = _cel_errors(apply_defaults(obj, self.schema), self.schema, "")
        if structural:  # a rule that cannot evaluate (a required field missing) adds nothing new
            rules = (e for e in rules if "could not be evaluated" not in e.message)
        return [error for _, error in structural] + list(rules)


@cache
def slm_validator() -> SchemaValidator:
    return SchemaValidator(build_openapi_schema())


def validate_object(obj: Any, *, local: bool = False) -> list[FieldError]:
    """All errors in one SLMDeployment object, layer by layer (empty when valid). `local`: for
    `slm serve`, which may also read file:// and plain-path sources."""
    if not isinstance(obj, dict):
        return [FieldError("<root>", "expected a mapping (an SLMDeployment object)")]
    mismatch = resource_mismatch(obj)
    if mismatch is not None:
        return [mismatch]
    return metadata_errors(obj) + slm_validator().errors(obj) + extra_errors(obj, local=local)


def resource_mismatch(obj: dict[str, Any]) -> FieldError | None:
    """kubectl's answer to an apiVersion/kind the API server does not serve, or None."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not api_version or not kind:
        missing = "apiVersion" if not api_version else "kind"
        return FieldError(missing, f"Required value: {missing} must be set")
    if kind != KIND:
        return FieldError("kind", f"Invalid value: {json.dumps(kind)}: expected {KIND}")
    if api_version != API_VERSION:
        group = str(api_version).split("/")[0] if "/" in str(api_version) else ""
        return FieldError(
            "apiVersion",
            f'no matches for kind "{KIND}" in version "{api_version}"'
            + (f" (the {GROUP} group serves {API_VERSION})" if group == GROUP else ""),
        )
    return None


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


def _structural_errors(obj: dict[str, Any], validator: jsonschema.Draft7Validator) -> Iterator[tuple[str, FieldError]]:
    """(jsonschema keyword, error) pairs in the API server's wording, sorted by field path."""
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = format_path(error.absolute_path)
        if error.validator == "required":
            missing = error.message.split("'")[1]
            yield "required", FieldError(_join(path, missing), "Required value")
        elif error.validator == "additionalProperties":
            for name in _unexpected(error):
                yield "additionalProperties", FieldError(_join(path, name), f'unknown field "{_join(path, name)}"')
        else:
            yield str(error.validator), FieldError(path or "<root>", _wording(error, path or "<root>"))


def _wording(error: jsonschema.ValidationError, path: str) -> str:
    """kube-openapi's messages for one failed keyword (k8s.io/kube-openapi/pkg/validation/errors)."""
    value, bound = error.instance, error.validator_value
    shown = json.dumps(value)[:200] if isinstance(value, str | int | float | bool) or value is None else "object"
    match error.validator:
        case "type":
            kinds = bound if isinstance(bound, str) else " or ".join(b for b in bound if b != "null")
            return f"Invalid value: {json.dumps(_kind(value))}: {path} in body must be of type {kinds}: {shown}"
        case "enum":
            return f"Unsupported value: {shown}: supported values: " + ", ".join(json.dumps(v) for v in bound)
        case "pattern":
            return f"Invalid value: {shown}: {path} in body should match '{bound}'"
        case "maxLength":
            return f"Too long: may not be more than {bound} bytes"
        case "minLength":
            return f"Invalid value: {shown}: {path} in body should be at least {bound} chars long"
        case "maxItems":
            return f"Too many: {len(value)}: must have at most {bound} items"
        case "minItems":
            return f"Invalid value: {len(value)}: {path} in body should have at least {bound} items"
        case "maxProperties":
            return f"Too many: {len(value)}: must have at most {bound} items"
        case "minimum":
            return f"Invalid value: {shown}: {path} in body should be greater than or equal to {bound}"
        case "maximum":
            return f"Invalid value: {shown}: {path} in body should be less than or equal to {bound}"
        case "exclusiveMinimum":
            return f"Invalid value: {shown}: {path} in body should be greater than {bound}"
        case "exclusiveMaximum":
            return f"Invalid value: {shown}: {path} in body should be less than {bound}"
        case "anyOf":  # int-or-string
            return f"Invalid value: {json.dumps(_kind(value))}: {path} in body must be of type integer or string"
    return f"Invalid value: {shown}: {error.message}"


def _kind(value: Any) -> str:
    """The JSON type name the API server reports for a value of the wrong type."""
    for python, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array")):
        if isinstance(value, python):
            return name
    return "object" if isinstance(value, dict) else "null"


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


@lru_cache(maxsize=4096)
def _rule_outcome(rule: str, value_json: str) -> str | bool:
    """Whether `rule` holds for the value (as JSON), or why it could not be evaluated. A rule's outcome
    depends on its value alone (CEL has no clock or I/O), so it is kept: SLMDeployments share most of
    their subtrees, and celpy's interpreter costs milliseconds per rule."""
    try:
        result = _compiled(rule).evaluate({"self": json_to_cel(json.loads(value_json))})
    except CELEvalError as error:
        return str(error)
    return str(result) if isinstance(result, CELEvalError) else bool(result)


def _cel_errors(obj: Any, schema: dict[str, Any], path: str) -> Iterator[FieldError]:
    rules = schema.get("x-kubernetes-validations", ())
    value_json = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str) if rules else ""
    for validation in rules:
        rule, message = validation["rule"], validation.get("message", f"failed rule: {validation['rule']}")
        where = path + validation.get("fieldPath", "")
        outcome = _rule_outcome(rule, value_json)
        if isinstance(outcome, str):
            yield FieldError(where or "<root>", f"rule {rule!r} could not be evaluated: {outcome}")
        elif not outcome:
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


def parse_deployment(obj: dict[str, Any], *, local: bool = False) -> SLMDeployment:
    """Validate like the API server and the webhook, then parse (with defaults) into the typed model."""
    errors = validate_object(obj, local=local)
    if errors:
        raise InvalidSpecError(errors)
    return SLMDeployment.model_validate(apply_defaults(obj, slm_validator().schema))
