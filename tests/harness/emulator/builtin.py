"""Built-in kinds the operator writes besides its CRDs (ServiceAccount, Secret, NetworkPolicy), with
what the API server checks on them: the Kubernetes OpenAPI schema, strictly (`kubernetes-validate`,
schemas of Kubernetes 1.37), plus the rules of `k8s.io/kubernetes/pkg/apis/*/validation` the schema
does not carry and the operator's objects could break (label syntax, base64 Secret data, port ranges
and protocols, Secret immutability is not modelled: the operator never updates a Secret)."""

from __future__ import annotations

import base64
import binascii
import functools
import re
from typing import Any

import jsonschema
import kubernetes_validate.utils
import referencing

from tests.harness.emulator.schema import ResourceDef

KUBE_VERSION = "1.37.0"
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def validate_builtin(obj: dict[str, Any]) -> list[str]:
    """Field errors (`path: message`) for a built-in object; empty when the API server would take it."""
    error = jsonschema.exceptions.best_match(_validator(obj["kind"], obj["apiVersion"]).iter_errors(obj))
    if error is not None:
        path = ".".join(str(p) for p in error.path) or "<root>"
        return [f"{path}: Invalid value: {error.message}"]
    causes = _labels("metadata.labels", (obj.get("metadata") or {}).get("labels") or {})
    if obj.get("kind") == "Secret":
        causes += _secret_data(obj)
    if obj.get("kind") == "NetworkPolicy":
        causes += _network_policy(obj.get("spec") or {})
    return causes


@functools.cache
def _validator(kind: str, api_version: str) -> jsonschema.protocols.Validator:
    """`kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)`'s validator, built once per kind:
    the library reads its schema files (the definitions are megabytes of JSON) on every call."""
    directory = f"kubernetes-json-schema/v{KUBE_VERSION}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # networking.k8s.io/v1 → networking-v1
    schema = kubernetes_validate.utils.schema_contents(f"{directory}/{kind.lower()}-{group_version}.json", KUBE_VERSION)
    definitions = kubernetes_validate.utils.schema_contents(f"{directory}/_definitions.json", KUBE_VERSION)
    registry: referencing.Registry[Any] = referencing.Resource.from_contents(definitions) @ (
        referencing.Resource.from_contents(schema) @ referencing.Registry()
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _labels(path: str, labels: dict[str, Any]) -> list[str]:
    causes = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if not name or not _LABEL_NAME.match(name) or (prefix and not _LABEL_PREFIX.match(prefix)):
            causes.append(f"{path}: Invalid value: {key!r}: a qualified name must be a valid label key")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_NAME.match(value):
            causes.append(f"{path}: Invalid value: {value!r}: a valid label must be 63 characters or less")
    return causes


def _secret_data(obj: dict[str, Any]) -> list[str]:
    causes = []
    for key, value in (obj.get("data") or {}).items():
        if not _SECRET_KEY.match(key):
            causes.append(f"data[{key}]: Invalid value: {key!r}: a valid config key must consist of alphanumerics")
        try:
            base64.b64decode(str(value), validate=True)
        except binascii.Error:
            causes.append(f"data[{key}]: Invalid value: illegal base64 data")
    return causes


def _network_policy(spec: dict[str, Any]) -> list[str]:
    causes = _selector("spec.podSelector", spec.get("podSelector") or {})
    for i, rule in enumerate(spec.get("ingress") or []):
        for j, peer in enumerate(rule.get("from") or []):
            for key in ("podSelector", "namespaceSelector"):
                if key in peer:
                    causes += _selector(f"spec.ingress[{i}].from[{j}].{key}", peer[key])
        for j, port in enumerate(rule.get("ports") or []):
            where = f"spec.ingress[{i}].ports[{j}]"
            if port.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
                causes.append(f"{where}.protocol: Unsupported value: {port['protocol']!r}")
            number = port.get("port")
            if isinstance(number, int) and not 1 <= number <= 65535:
                causes.append(f"{where}.port: Invalid value: {number}: must be between 1 and 65535, inclusive")
    return causes


def _selector(path: str, selector: dict[str, Any]) -> list[str]:
    return _labels(f"{path}.matchLabels", selector.get("matchLabels") or {})


def _builtin(group: str, plural: str, kind: str, short: tuple[str, ...] = ()) -> ResourceDef:
    resource = ResourceDef(
        group=group,
        version="v1",
        plural=plural,
        kind=kind,
        singular=kind.lower(),
        short_names=short,
        custom=False,
    )
    resource.validators.append(validate_builtin)
    return resource


SERVICE_ACCOUNT = _builtin("", "serviceaccounts", "ServiceAccount", ("sa",))
SECRET = _builtin("", "secrets", "Secret")
NETWORK_POLICY = _builtin("networking.k8s.io", "networkpolicies", "NetworkPolicy", ("netpol",))
BUILTIN_KINDS = (SERVICE_ACCOUNT, SECRET, NETWORK_POLICY)
