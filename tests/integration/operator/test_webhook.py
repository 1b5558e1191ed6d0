"""The real kopf admission server over HTTPS, called with AdmissionReview requests as kube-apiserver
sends them, answers exactly as `slm validate` does. The API server itself cannot run here: the test
plays its part of the exchange (an httpx client that trusts the webhook's certificate).

The webhook judges each review alone and the reviews store nothing, so one operator with its webhook
serves the whole module."""

from __future__ import annotations

import copy
import datetime
import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kopf
import pytest

from slm_operator.admission.certificates import write_self_signed
from slm_operator.admission.webhook import HANDLER_ID
from slm_operator.api.validation import validate_object
from slm_operator.runner import operator_in_thread
from slm_operator.settings import OperatorSettings
from tests.fixtures.malformed import BASE, TABLE, Malformed
from tests.harness.cluster import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What cert-manager would mount: tls.crt and tls.key for the webhook's host."""
    directory = tmp_path_factory.mktemp("certs")
    write_self_signed(directory, ["localhost"], datetime.datetime.now(datetime.UTC))
    return directory


@pytest.fixture(scope="module")
def webhook(module_settings: OperatorSettings, certs: Path) -> Iterator[httpx.Client]:
    port = _free_port()
    with_webhook = module_settings.model_copy(
        update={
            "webhook_port": port,
            "webhook_addr": "127.0.0.1",
            "webhook_host": "localhost",
            "webhook_cert_dir": str(certs),
        }
    )
    with operator_in_thread(with_webhook):
        client = httpx.Client(
            base_url=f"https://localhost:{port}",
            verify=ssl.create_default_context(cafile=certs / "tls.crt"),
            timeout=10,
        )
        wait_for(lambda: _reachable(client), what="the webhook server")
        yield client
        client.close()


def _reachable(client: httpx.Client) -> bool:
    try:
        return _review(client, "CREATE", BASE)["allowed"] is True
    except httpx.TransportError:
        return False


def _review(client: httpx.Client, operation: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> Any:
    request = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "slm.dev", "version": "v1alpha1", "kind": "SLMDeployment"},
        "resource": {"group": "slm.dev", "version": "v1alpha1", "resource": "slmdeployments"},
        "requestKind": {"group": "slm.dev", "version": "v1alpha1", "kind": "SLMDeployment"},
        "requestResource": {"group": "slm.dev", "version": "v1alpha1", "resource": "slmdeployments"},
        "name": obj.get("metadata", {}).get("name", ""),
        "namespace": "default",
        "operation": operation,
        "userInfo": {"username": "admin"},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
        "options": {},
    }
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    response = client.post(f"/{HANDLER_ID}", json=review)
    response.raise_for_status()
    body = response.json()
    assert body["response"]["uid"] == request["uid"]
    return body["response"]


CLUSTER_ROUTED = {"wrong-version", "wrong-kind"}
"""The API server sends the webhook only objects of the kind and version it registered for."""


@pytest.mark.parametrize("case", [m for m in TABLE if m.id not in CLUSTER_ROUTED], ids=lambda m: m.id)
def test_the_webhook_denies_what_slm_validate_rejects(webhook: httpx.Client, case: Malformed) -> None:
    obj = case.build()
    response = _review(webhook, "CREATE", obj)
    assert response["allowed"] is False
    assert response["status"]["code"] == 422
    message = response["status"]["message"]
    for error in validate_object(obj):
        assert str(error) in message


def test_the_webhook_admits_what_slm_validate_accepts(webhook: httpx.Client) -> None:
    assert _review(webhook, "CREATE", BASE)["allowed"] is True
    edited = copy.deepcopy(BASE)
    edited["spec"]["autoscaling"]["maxReplicas"] = 4
    assert _review(webhook, "UPDATE", edited, BASE)["allowed"] is True


def test_a_metadata_only_update_of_an_invalid_object_passes(webhook: httpx.Client) -> None:
    """Objects admitted before a rule existed can still get finalizers removed and be deleted."""
    old = copy.deepcopy(BASE)
    old["spec"]["model"]["source"] = "hf://justonepart"
    new = copy.deepcopy(old)
    new["metadata"]["annotations"] = {"operator.slm.dev/last-handled-configuration": "{}"}
    assert _review(webhook, "UPDATE", new, old)["allowed"] is True
    changed = copy.deepcopy(new)
    changed["spec"]["model"]["revision"] = "main"
    assert _review(webhook, "UPDATE", changed, old)["allowed"] is False


def test_self_signed_mode_serves_https_with_its_own_ca(module_settings: OperatorSettings) -> None:
    """Without cert-manager files the operator makes its own certificate (its CA is what the chart's
    ValidatingWebhookConfiguration gets as caBundle)."""
    from slm_operator.admission.webhook import build_webhook_server

    server = build_webhook_server(
        module_settings.model_copy(update={"webhook_port": _free_port(), "webhook_host": "localhost"}),
        api_client=None,
    )
    assert isinstance(server, kopf.WebhookServer)
    pem = Path(str(server.certfile)).read_bytes()
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
