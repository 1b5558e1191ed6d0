"""Which keys of the credentials Secret a serving pod gets, as single environment variables.

Pure. A pod gets only the keys the loader of its model sources reads (never `envFrom` of the whole
Secret, which would hand every key to every Ray process), each `optional` so a Secret that lacks one
still starts (the operator cannot see the Secret's keys: it has no access to Secrets it did not create).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

KEYS_BY_SCHEME: dict[str, tuple[str, ...]] = {
    # vLLM / huggingface_hub read the token for gated or private repositories.
    "hf": ("HF_TOKEN",),
    # s3fs (botocore) reads these; AWS_ENDPOINT_URL points at S3-compatible stores (MinIO, R2).
    "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION"),
}
"""gs:// takes no keys: gcsfs authenticates through workload identity on the pods' ServiceAccount."""


def credential_keys(sources: Iterable[str]) -> list[str]:
    """The Secret keys that model sources (`hf://…`, `s3://…`) need, sorted, without repeats."""
    keys = {key for source in sources for key in KEYS_BY_SCHEME.get(source.partition("://")[0], ())}
    return sorted(keys)


def credential_env(secret_name: str, keys: Iterable[str]) -> list[dict[str, Any]]:
    """`env` entries taking each of `keys` from the Secret `secret_name` (optional keys)."""
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key, "optional": True}}}
        for key in keys
    ]
