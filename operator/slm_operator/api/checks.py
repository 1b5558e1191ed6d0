"""The checks CEL cannot express: run by the admission webhook, `slm validate` and the operator alike.

Each returns `FieldError`s for a plain (possibly ill-typed) object: the checks look only at values of
the expected type, so they can run beside the schema's errors and every problem is reported at once.
- `metadata.name`: a DNS-1035 label of at most `MAX_NAME_LENGTH` characters (KubeRay's derived names).
- quantities, the labels of the node selector and of `spec.network`'s selectors, and tolerations with
  Kubernetes' own rules (`k8s_rules`).
- model and adapter sources well-formed and normalised: known scheme, right number of parts, no `.`/`..`
  or empty segments, no credentials, no query; `file://` and local paths only for `slm serve`.
- engine arguments: none the operator sets, none carrying a secret, `trust_remote_code` only with
  `model.trustRemoteCode: true`, small enough to live in a Ray Serve config.
- golden-prompt expectations: `regex` compiles under RE2 (what the gate runs), `jsonSchema` is a schema
  of at most `MAX_JSON_SCHEMA_BYTES` as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema

from slm_operator.api import k8s_rules
from slm_serving.model_source import TINY_SOURCES
from slm_serving.regex import RegexError, compile_regex
from slm_serving.vllm_args import RESERVED_ENGINE_ARGS

MAX_NAME_LENGTH = 47
"""KubeRay's `MaxRayServiceNameLength` (v1.3+): the RayService carries the SLMDeployment's name, KubeRay
names its RayCluster `<name>-<5 random>` (+6) and that cluster's Services `<cluster>-serve-svc` (+10),
which must stay within Kubernetes' 63-character DNS label: 63 - 10 - 6 = 47. KubeRay also requires a
DNS-1035 label (starts with a letter, no dots)."""

MAX_ENGINE_ARGS_BYTES = 16384
MAX_JSON_SCHEMA_BYTES = 16384
"""`expect.jsonSchema` is free-form (the CRD keeps unknown fields there): bounded as JSON instead."""
LOCAL_ONLY_SCHEMES = ("file",)

_SECRET_KEY = re.compile(r"(token|secret|passw(or)?d|api_?key|credential|private_?key|access_?key)", re.I)
_SECRET_VALUE = re.compile(r"^(hf_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{30,})$")
_ENGINE_ARG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_HF_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class FieldError:
    """One problem, at a field path such as `spec.rollout.steps[1].weight`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def metadata_errors(obj: dict[str, Any]) -> list[FieldError]:
    """What the API server itself checks of metadata.name, before the schema: a DNS-1123 subdomain."""
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        return [FieldError("metadata.name", "Required value: name or generateName is required")]
    return [_invalid("metadata.name", name, why) for why in k8s_rules.dns1123_subdomain_errors(name)]


def extra_errors(obj: dict[str, Any], *, local: bool = False) -> list[FieldError]:
    """Every check above for one SLMDeployment object; `local` allows file:// sources (`slm serve`)."""
    spec = obj.get("spec")
    errors = list(_name_errors(obj.get("metadata")))
    if isinstance(spec, dict):
        errors += _spec_errors(spec, local=local)
    return errors


def _invalid(path: str, value: Any, why: str) -> FieldError:
    return FieldError(path, f"Invalid value: {json.dumps(value)[:200]}: {why}")


def _name_errors(metadata: Any) -> Iterator[FieldError]:
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name or k8s_rules.dns1123_subdomain_errors(name):
        return  # reported by metadata_errors
    for why in k8s_rules.dns1035_label_errors(name):
        yield _invalid("metadata.name", name, f"KubeRay names the RayService after it: {why}")
    if len(name) > MAX_NAME_LENGTH:
        yield _invalid(
            "metadata.name",
            name,
            f"must be no more than {MAX_NAME_LENGTH} characters: KubeRay derives the RayCluster "
            "<name>-xxxxx and its Service <name>-xxxxx-serve-svc from it, which must fit 63",
        )


def _spec_errors(spec: dict[str, Any], *, local: bool) -> Iterator[FieldError]:
    model = _dict(spec.get("model"))
    if isinstance(model.get("source"), str):
        yield from _source_errors("spec.model.source", model["source"], local=local)
    yield from _engine_args_errors(model)
    for index, adapter in enumerate(_list(spec.get("adapters"))):
        if isinstance(adapter, dict) and isinstance(adapter.get("source"), str):
            yield from _source_errors(f"spec.adapters[{index}].source", adapter["source"], local=local)
    yield from _resources_errors(_dict(spec.get("resources")))
    yield from _network_errors(_dict(spec.get("network")))
    prompts = _list(_dict(_dict(spec.get("rollout")).get("validation")).get("prompts"))
    for index, prompt in enumerate(prompts):
        expect = _dict(_dict(prompt).get("expect"))
        yield from _expect_errors(f"spec.rollout.validation.prompts[{index}].expect", expect)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------- sources


def source_problem(source: str, *, local: bool = False) -> str | None:
    """Why a model or adapter source is malformed, or None when it is well-formed and normalised."""
    if any(c.isspace() or ord(c) < 32 for c in source):
        return "must not contain whitespace or control characters"
    if source.startswith(("/", "./")):
        scheme, rest = "file", source
    else:
        scheme, sep, rest = source.partition("://")
        if not sep or scheme not in ("hf", "s3", "gs", "pvc", "file", "tiny"):
            return "unknown scheme: use hf://, s3://, gs://, pvc://, tiny://, or file:// and paths with slm serve"
    if scheme in LOCAL_ONLY_SCHEMES and not local:
        return "file:// and local paths are read inside the serving container: in a cluster use hf://, s3://, gs:// or pvc://"
    if "?" in rest or "#" in rest:
        return "must not carry a query or fragment"
    authority = rest.split("/", 1)[0]
    if "@" in authority or (scheme in ("s3", "gs") and ":" in authority):
        return "must not contain credentials: put them in a Secret named by spec.model.credentialsSecretRef"
    body = rest[2:] if rest.startswith("./") else rest.lstrip("/") if scheme == "file" else rest
    parts = body.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "must be normalised: no empty, '.' or '..' path segments"
    if scheme == "tiny" and body not in TINY_SOURCES:
        return "tiny:// names a built-in test model or adapter: " + ", ".join(f"tiny://{t}" for t in TINY_SOURCES)
    if scheme == "hf" and (len(parts) != 2 or not all(_HF_PART.match(p) for p in parts)):
        return "must name a Hugging Face repository: hf://org/name"
    if scheme in ("s3", "gs") and (len(parts) < 2 or not _BUCKET.match(parts[0])):
        return f"must name a bucket and a path: {scheme}://bucket/path"
    if scheme == "pvc" and k8s_rules.dns1123_subdomain_errors(parts[0]):
        return "must name a PersistentVolumeClaim (a DNS-1123 subdomain): pvc://claim/path"
    return None


def _source_errors(path: str, source: str, *, local: bool) -> Iterator[FieldError]:
    problem = source_problem(source, local=local)
    if problem is not None:
        yield _invalid(path, source, problem)


# ---------------------------------------------------------------- engine arguments


_RESERVED_DEFAULT_WHY = "set by the operator from the model fields and adapters"
_RESERVED_WHY = dict.fromkeys(
    ("enable_lora", "max_loras", "max_lora_rank"),
    "derived by the operator from spec.adapters (their number and spec.adapters[].rank)",
)


def _engine_args_errors(model: dict[str, Any]) -> Iterator[FieldError]:
    engine_args = model.get("engineArgs")
    if not isinstance(engine_args, dict):
        return
    for key, value in sorted(engine_args.items()):
        path = f"spec.model.engineArgs.{key}"
        if not _ENGINE_ARG_NAME.match(key):
            yield FieldError(path, "Invalid value: engine argument names are vLLM's snake_case names")
        elif key in RESERVED_ENGINE_ARGS:
            yield FieldError(path, f"Forbidden: {_RESERVED_WHY.get(key, _RESERVED_DEFAULT_WHY)}, not engineArgs")
        elif _SECRET_KEY.search(key) or (isinstance(value, str) and _SECRET_VALUE.match(value)):
            yield FieldError(
                path,
                "Forbidden: looks like a credential, which anyone who can read the SLMDeployment would see: "
                "put it in a Secret named by spec.model.credentialsSecretRef",
            )
        elif key == "trust_remote_code" and value is not False and model.get("trustRemoteCode") is not True:
            yield FieldError(
                path, "Forbidden: runs code shipped with the model: needs spec.model.trustRemoteCode: true"
            )
    if len(json.dumps(engine_args)) > MAX_ENGINE_ARGS_BYTES:
        yield FieldError("spec.model.engineArgs", f"Too long: must have at most {MAX_ENGINE_ARGS_BYTES} bytes as JSON")


# ---------------------------------------------------------------- resources


def _resources_errors(resources: dict[str, Any]) -> Iterator[FieldError]:
    for name in ("cpu", "memory"):
        value = resources.get(name)  # the schema's pattern reports the grammar; here: not negative
        if isinstance(value, int | str) and not k8s_rules.quantity_grammar_errors(value):
            for why in k8s_rules.resource_quantity_errors(resources[name]):
                yield _invalid(f"spec.resources.{name}", resources[name], why)
    yield from _label_errors("spec.resources.nodeSelector", resources.get("nodeSelector"))
    for index, toleration in enumerate(_list(resources.get("tolerations"))):
        if not isinstance(toleration, dict):
            continue
        path = f"spec.resources.tolerations[{index}]"
        for field, message in k8s_rules.toleration_errors(toleration):
            yield FieldError(f"{path}.{field}", message)
        if not toleration.get("key"):
            yield FieldError(
                f"{path}.key",
                "Required value: an empty key with operator Exists tolerates every taint (control-plane "
                "and other tenants' nodes included): name the taint key",
            )


def _label_errors(path: str, labels: Any) -> Iterator[FieldError]:
    """Label keys and values (a node selector, a label selector's matchLabels) by Kubernetes' rules."""
    for key, value in sorted(_dict(labels).items()):
        for why in k8s_rules.qualified_name_errors(key):
            yield _invalid(f"{path}.{key}", key, why)
        if isinstance(value, str):
            for why in k8s_rules.label_value_errors(value):
                yield _invalid(f"{path}.{key}", value, why)


def _network_errors(network: dict[str, Any]) -> Iterator[FieldError]:
    """The label selectors the operator copies into the deployment's NetworkPolicy."""
    for peers in ("servingFrom", "metricsFrom"):
        for index, peer in enumerate(_list(network.get(peers))):
            for selector in ("podSelector", "namespaceSelector"):
                labels = _dict(_dict(peer).get(selector)).get("matchLabels")
                yield from _label_errors(f"spec.network.{peers}[{index}].{selector}.matchLabels", labels)


# ---------------------------------------------------------------- expectations


def _expect_errors(path: str, expect: dict[str, Any]) -> Iterator[FieldError]:
    regex = expect.get("regex")
    if isinstance(regex, str):
        try:
            compile_regex(regex)
        except RegexError as error:
            yield _invalid(f"{path}.regex", regex, f"not a valid RE2 regular expression: {error}")
    schema = expect.get("jsonSchema")
    if isinstance(schema, dict) and len(json.dumps(schema)) > MAX_JSON_SCHEMA_BYTES:
        yield FieldError(f"{path}.jsonSchema", f"Too long: must have at most {MAX_JSON_SCHEMA_BYTES} bytes as JSON")
    elif isinstance(schema, dict):
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as error:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            yield FieldError(
                f"{path}.jsonSchema", f"Invalid value: not a valid JSON Schema at {where}: {error.message}"
            )
