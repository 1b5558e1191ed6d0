"""Ray token authentication: every RayService asks KubeRay for it, each SLMDeployment has its own
token, and the token itself is in no object but its Secret."""

from __future__ import annotations

import base64
import json

import kubernetes_validate
import yaml

from slm_operator.api.models import SLMDeployment
from slm_operator.api.validation import parse_deployment
from slm_operator.builder.pod_security import build_service_account
from slm_operator.builder.ray_auth import (
    TOKEN_SECRET_KEY,
    build_token_secret,
    deployment_token,
    derive_token,
    token_secret_name,
)
from slm_operator.builder.rayservice import build_rayservice
from tests.conftest import EXAMPLES

KEY = b"k" * 32
UID = "0b6c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"


def _deployment(uid: str | None = UID, name: str = "tiny") -> SLMDeployment:
    obj = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    obj["metadata"].update(name=name, namespace="team-a")
    if uid:
        obj["metadata"]["uid"] = uid
    return parse_deployment(obj)


def test_every_rayservice_turns_token_auth_on_with_the_deployments_secret() -> None:
    options = build_rayservice(_deployment())["spec"]["rayClusterConfig"]["authOptions"]
    assert options == {"mode": "token", "secretName": token_secret_name("tiny", UID)}
    # Not stored yet (no uid): still on, with a Secret KubeRay generates.
    assert build_rayservice(_deployment(uid=None))["spec"]["rayClusterConfig"]["authOptions"] == {"mode": "token"}


def test_tokens_are_stable_and_differ_per_deployment_incarnation_and_key() -> None:
    token = derive_token(KEY, "team-a", "tiny", UID)
    assert token == derive_token(KEY, "team-a", "tiny", UID) and len(token) == 64
    assert token != derive_token(KEY, "team-a", "tiny", "another-uid")
    assert token != derive_token(KEY, "team-b", "tiny", UID)
    assert token != derive_token(b"x" * 32, "team-a", "tiny", UID)


def test_token_secret_is_valid_owned_and_holds_the_token_under_kubernetes_key() -> None:
    deployment = _deployment(name="a" * 47)  # the longest name validation admits
    secret = build_token_secret(KEY, deployment)
    kubernetes_validate.validate(secret, kubernetes_validate.latest_version(), strict=True)
    assert len(secret["metadata"]["name"]) <= 63
    assert base64.b64decode(secret["data"][TOKEN_SECRET_KEY]).decode() == deployment_token(KEY, deployment)
    assert secret["metadata"]["ownerReferences"][0]["uid"] == UID
    assert secret["immutable"] is True


def test_service_account_is_valid_and_mounts_no_token_by_default() -> None:
    account = build_service_account(_deployment())
    kubernetes_validate.validate(account, kubernetes_validate.latest_version(), strict=True)
    assert account["metadata"]["name"] == "tiny-ray" and account["automountServiceAccountToken"] is False


def test_the_token_is_in_no_rayservice_field() -> None:
    deployment = _deployment()
    assert deployment_token(KEY, deployment) not in json.dumps(build_rayservice(deployment))
