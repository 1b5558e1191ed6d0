"""Ray's token authentication for an SLMDeployment's RayService (Ray >= 2.52, KubeRay >= 1.5.1).

Pure. Each SLMDeployment gets its own token, kept in a Secret the operator creates and the
SLMDeployment owns; KubeRay reads it through `rayClusterConfig.authOptions.secretName` (key
`auth_token`, KubeRay 1.7 `RAY_AUTH_TOKEN_SECRET_KEY`) and gives it to every Ray process as
`RAY_AUTH_TOKEN`, with `RAY_AUTH_MODE=token`. The dashboard (8265), GCS (6379) and Ray client (10001)
then refuse callers without it.

The token is derived, not stored: HMAC-SHA256 of the deployment's identity under a key only the
operator holds (`SLM_RAY_TOKEN_KEY`). So the operator can call the dashboard with the token at any time
without being allowed to read Secrets: it only ever *creates* this one (and a create that finds the
name taken reveals nothing). The uid is part of both the name and the token: a deleted and recreated
SLMDeployment of the same name gets a new token, and never meets its predecessor's Secret while
garbage collection removes it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from slm_operator.api.models import SLMDeployment
from slm_operator.builder.ownership import child_metadata

TOKEN_SECRET_KEY = "auth_token"
"""The data key KubeRay reads the token from."""


def token_secret_name(name: str, uid: str) -> str:
    """`<name>-ray-token-<first 8 of uid>`: unique per SLMDeployment incarnation, at most 63 characters."""
    return f"{name[:40]}-ray-token-{uid.replace('-', '')[:8]}"


def derive_token(key: bytes, namespace: str, name: str, uid: str) -> str:
    """The Ray token of one SLMDeployment: 64 hex digits, stable across operator restarts."""
    return hmac.new(key, f"{namespace}/{name}/{uid}".encode(), hashlib.sha256).hexdigest()


def auth_options(name: str, uid: str | None) -> dict[str, Any]:
    """`rayClusterConfig.authOptions`. Without a uid (an object not stored yet, e.g. `slm render`)
    KubeRay generates a Secret of its own: authentication stays on either way."""
    options: dict[str, Any] = {"mode": "token"}
    if uid:
        options["secretName"] = token_secret_name(name, uid)
    return options


def deployment_token(key: bytes, deployment: SLMDeployment) -> str:
    meta = deployment.metadata
    return derive_token(key, str(meta.get("namespace") or "default"), str(meta["name"]), str(meta["uid"]))


def build_token_secret(key: bytes, deployment: SLMDeployment) -> dict[str, Any]:
    """The Secret holding the token of a stored SLMDeployment (one with a uid), which owns it."""
    meta = deployment.metadata
    token = deployment_token(key, deployment)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": child_metadata(deployment, token_secret_name(str(meta["name"]), str(meta["uid"]))),
        "immutable": True,
        "data": {TOKEN_SECRET_KEY: base64.b64encode(token.encode()).decode()},
    }
