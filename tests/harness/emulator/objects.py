"""Pure API-server rules for one object: patches, generation, selectors, printer-column tables."""

from __future__ import annotations

import copy
import datetime
import json
import re
from typing import Any

import jsonpatch
import yaml

from slm_operator.api.k8s_rules import dns1123_subdomain_errors
from tests.harness.emulator.schema import ResourceDef

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class ApiError(Exception):
    """An error the API server answers with a `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


_CAUSE_REASONS = (
    ("Required value", "FieldValueRequired"),
    ("Unsupported value", "FieldValueNotSupported"),
    ("Too long", "FieldValueTooLong"),
    ("Too many", "FieldValueTooMany"),
    ("Forbidden", "FieldValueForbidden"),
    ("Internal error", "InternalError"),
)


def invalid(resource: ResourceDef, name: str, causes: list[str]) -> ApiError:
    """422 Invalid as kube-apiserver words it (apimachinery `errors.NewInvalid`, v1.33): one cause per
    error with its field and reason, the message listing them all (`[a: x, b: y]` when several)."""
    details = {"name": name, "group": resource.group, "kind": resource.kind, "causes": [_cause(c) for c in causes]}
    listed = causes[0] if len(causes) == 1 else "[" + ", ".join(causes) + "]"
    message = f'{resource.kind}.{resource.group} "{name}" is invalid: {listed}'
    return ApiError(422, "Invalid", message, details)


def _cause(text: str) -> dict[str, str]:
    field, _, message = text.partition(": ")
    reason = next((r for prefix, r in _CAUSE_REASONS if message.startswith(prefix)), "FieldValueInvalid")
    return {"reason": reason, "field": field, "message": message}


def not_found(resource: ResourceDef, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{resource.plural}.{resource.group} "{name}" not found',
        {"name": name, "group": resource.group, "kind": resource.plural},
    )


def conflict(resource: ResourceDef, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource.plural}.{resource.group} "{name}": '
        "the object has been modified; please apply your changes to the latest version and try again",
        {"name": name, "group": resource.group, "kind": resource.plural},
    )


def now_rfc3339(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def name_causes(name: str) -> list[str]:
    """ObjectMeta's name rule (a DNS-1123 subdomain), as 422 causes; empty when valid."""
    if not name:
        return ["metadata.name: Required value: name or generateName is required"]
    return [f"metadata.name: Invalid value: {json.dumps(name)}: {e}" for e in dns1123_subdomain_errors(name)]


def check_name(resource: ResourceDef, name: str) -> None:
    causes = name_causes(name)
    if causes:
        raise invalid(resource, name or "", causes)


def essence(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: what `metadata.generation` counts changes of."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def apply_patch(current: dict[str, Any], content_type: str, body: bytes, resource: ResourceDef) -> dict[str, Any]:
    """The object after a PATCH, or ApiError (415 for types the resource does not take, 422 on failure)."""
    kind = content_type.split(";", 1)[0].strip()
    if kind == MERGE_PATCH or (kind == "application/json" and body.lstrip()[:1] == b"{"):
        patch = load_body(body)
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        return merge_patch(current, patch)
    if kind in (JSON_PATCH, "application/json"):
        ops = load_body(body)
        try:
            result = jsonpatch.apply_patch(copy.deepcopy(current), ops)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            raise ApiError(422, "Invalid", f"the server rejected our request: {e}") from e
        return result  # type: ignore[no-any-return]
    if kind == STRATEGIC_MERGE_PATCH and resource.custom:
        raise ApiError(415, "UnsupportedMediaType", "strategic merge patch is not supported for custom resources")
    if kind == STRATEGIC_MERGE_PATCH:
        return merge_patch(current, load_body(body))
    if kind == APPLY_PATCH:
        raise ApiError(415, "UnsupportedMediaType", "server-side apply is not emulated")
    raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {kind}")


def load_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        try:
            return yaml.safe_load(body)
        except yaml.YAMLError as e:
            raise ApiError(400, "BadRequest", f"invalid body: {e}") from e


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# ---------------------------------------------------------------- selectors


def parse_selector(text: str | None) -> list[tuple[str, str, list[str]]]:
    """`a=b,c!=d,e,!f,g in (h,i)` → [(key, op, values)]; ops: =, !=, exists, !exists, in, notin."""
    if not text:
        return []
    out: list[tuple[str, str, list[str]]] = []
    for raw in re.findall(r"[^,(]+(?:\([^)]*\))?", text):
        part = raw.strip()
        if not part:
            continue
        if m := re.match(r"^(\S+)\s+(in|notin)\s+\(([^)]*)\)$", part):
            out.append((m[1], m[2], [v.strip() for v in m[3].split(",") if v.strip()]))
        elif "!=" in part:
            key, value = part.split("!=", 1)
            out.append((key.strip(), "!=", [value.strip()]))
        elif "=" in part:
            key, value = part.replace("==", "=").split("=", 1)
            out.append((key.strip(), "=", [value.strip()]))
        elif part.startswith("!"):
            out.append((part[1:], "!exists", []))
        else:
            out.append((part, "exists", []))
    return out


def _matches(values: dict[str, str], requirements: list[tuple[str, str, list[str]]]) -> bool:
    for key, op, wanted in requirements:
        have = values.get(key)
        ok = {
            "=": have == wanted[0] if wanted else False,
            "!=": have != wanted[0] if wanted else True,
            "exists": have is not None,
            "!exists": have is None,
            "in": have in wanted,
            "notin": have not in wanted,
        }[op]
        if not ok:
            return False
    return True


def selected(obj: dict[str, Any], labels: str | None, fields: str | None) -> bool:
    meta = obj.get("metadata", {})
    field_values = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}
    return _matches(meta.get("labels") or {}, parse_selector(labels)) and _matches(field_values, parse_selector(fields))


# ---------------------------------------------------------------- tables (kubectl get)


def json_path(obj: Any, path: str) -> Any:
    """The simple `.a.b[0].c` JSONPath of printer columns."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            obj = obj[index] if isinstance(obj, list) and index < len(obj) else None
        else:
            obj = obj.get(part) if isinstance(obj, dict) else None
        if obj is None:
            return None
    return obj


def human_age(timestamp: str | None, now: datetime.datetime) -> str:
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def table(
    resource: ResourceDef, objects: list[dict[str, Any]], resource_version: str, now: datetime.datetime
) -> dict[str, Any]:
    """A `meta.k8s.io/v1` Table built from the CRD's additionalPrinterColumns, as `kubectl get` shows it."""
    columns = list(resource.printer_columns) or [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    ]
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    definitions += [
        {
            "name": c["name"],
            "type": c["type"],
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in columns
    ]
    rows = []
    for obj in objects:
        cells: list[Any] = [obj["metadata"]["name"]]
        for c in columns:
            value = json_path(obj, c["jsonPath"])
            cells.append(human_age(value, now) if c["type"] == "date" else value)
        partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
        rows.append({"cells": cells, "object": partial})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
