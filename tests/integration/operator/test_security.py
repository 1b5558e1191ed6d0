"""The real operator against the API emulator: the ServiceAccount, Ray token Secret and NetworkPolicy
it keeps per SLMDeployment, and no secret reaching a log line, Event, status or the RayService."""

from __future__ import annotations

import base64
import json
import logging

import kopf
import kubernetes
import pytest
from pydantic import SecretStr

from slm_operator.canary_pin import PinKey
from slm_operator.runner import build_memo, operator_in_thread
from slm_operator.settings import OperatorSettings
from tests.harness.cluster import SLMD, rays, slmd, tiny, wait_for
from tests.harness.emulator import EmulatorThread

FAKE_HF_TOKEN = "hf_FAKEfakeFAKE0123456789secretvalue"
TOKEN_KEY = "test-ray-token-key-0123456789abcdef"
PIN_KEY = "test-pin-key-0123456789abcdef"


@pytest.fixture
def settings(settings: OperatorSettings) -> OperatorSettings:
    return settings.model_copy(update={"ray_token_key": SecretStr(TOKEN_KEY), "pin_key": SecretStr(PIN_KEY)})


def _core(api: EmulatorThread) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(kubernetes.client.Configuration(host=api.url)))


def _networking(api: EmulatorThread) -> kubernetes.client.NetworkingV1Api:
    config = kubernetes.client.Configuration(host=api.url)
    return kubernetes.client.NetworkingV1Api(kubernetes.client.ApiClient(config))


def test_operator_creates_owned_account_token_secret_and_network_policy(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, operator: kopf.Memo
) -> None:
    created = k8s.create_namespaced_custom_object(*SLMD, tiny())
    uid = created["metadata"]["uid"]
    rayservice = wait_for(lambda: rays(k8s), what="RayService")
    (secret,) = wait_for(lambda: api.objects("secrets"), what="token Secret")
    (account,) = api.objects("serviceaccounts")
    (policy,) = wait_for(lambda: api.objects("networkpolicies"), what="NetworkPolicy")
    for child in (secret, account, policy):
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"]) == ("SLMDeployment", uid)
    config = rayservice["spec"]["rayClusterConfig"]
    assert config["authOptions"] == {"mode": "token", "secretName": secret["metadata"]["name"]}
    assert config["headGroupSpec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    token = base64.b64decode(secret["data"]["auth_token"]).decode()
    assert len(token) == 64 and token not in json.dumps(rayservice)

    # The network spec changes: the policy follows, in place.
    ingress_ns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    k8s.patch_namespaced_custom_object(*SLMD, "tiny", {"spec": {"network": {"servingFrom": [ingress_ns]}}})
    updated = wait_for(
        lambda: (
            (p := _networking(api).read_namespaced_network_policy("tiny-ray", "default"))
            and any(
                r._from and r._from[0].namespace_selector for r in p.spec.ingress if r.ports and r.ports[0].port == 8000
            )
            and p
        ),
        what="updated NetworkPolicy",
    )
    assert updated.metadata.uid == policy["metadata"]["uid"]
    assert len(api.objects("secrets")) == 1 and len(api.objects("serviceaccounts")) == 1  # created once


def test_an_existing_foreign_service_account_is_never_taken_over(
    api: EmulatorThread,
    k8s: kubernetes.client.CustomObjectsApi,
    operator: kopf.Memo,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its token (and whatever it is bound to) would go to the Ray head: a permanent error instead."""
    _core(api).create_namespaced_service_account(
        "default", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tiny-ray"}}
    )
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    wait_for(lambda: "ServiceAccount default/tiny-ray exists and is not managed" in caplog.text, what="the error")
    assert not api.objects("rayservices") and not api.objects("secrets")
    (account,) = api.objects("serviceaccounts")
    assert "ownerReferences" not in account["metadata"]


def test_no_secret_reaches_logs_events_status_or_the_rayservice(
    api: EmulatorThread,
    k8s: kubernetes.client.CustomObjectsApi,
    settings: OperatorSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fake HF token in the credentials Secret, the operator's own Ray token, its canary pin token and
    both keys appear in none of what the operator writes or says (at DEBUG, kopf's and the client's
    loggers included); the serveConfigV2 holds the pin token's digest only."""
    _core(api).create_namespaced_secret(
        "default",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hf-token"},
            "data": {"HF_TOKEN": base64.b64encode(FAKE_HF_TOKEN.encode()).decode()},
        },
    )
    body = tiny()
    body["spec"]["model"].update(source="hf://org/gated-model", credentialsSecretRef={"name": "hf-token"})
    caplog.set_level(logging.DEBUG)
    with operator_in_thread(settings):
        k8s.create_namespaced_custom_object(*SLMD, body)
        rayservice = wait_for(lambda: rays(k8s), what="RayService")
        (secret,) = wait_for(lambda: [s for s in api.objects("secrets") if "ray-token" in s["metadata"]["name"]])
        status = wait_for(lambda: slmd(k8s).get("status"), what="status")
        wait_for(lambda: api.objects("events"), what="Events")
    ray_token = base64.b64decode(secret["data"]["auth_token"]).decode()
    meta = slmd(k8s)["metadata"]
    pin_key = PinKey(PIN_KEY.encode())
    pin_token = pin_key.token(meta["namespace"], meta["name"], meta["uid"])
    assert pin_key.digest(meta["namespace"], meta["name"], meta["uid"]) in rayservice["spec"]["serveConfigV2"]
    worker = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    secret_env = [e["name"] for e in worker["env"] if "valueFrom" in e]
    assert secret_env == ["HF_TOKEN"]  # by reference, the one key hf:// needs
    said = "\n".join(
        [
            caplog.text,
            json.dumps(api.objects("events")),
            json.dumps(status),
            json.dumps(rayservice),
            rayservice["spec"]["serveConfigV2"],
        ]
    )
    assert len(caplog.records) > 10  # the operator did talk
    for secret_value in (FAKE_HF_TOKEN, ray_token, TOKEN_KEY, pin_token, PIN_KEY):
        assert secret_value not in said


def test_a_new_object_creates_without_reading_and_a_restart_reads_without_creating(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, settings: OperatorSettings
) -> None:
    """Requests per object, counted by the emulator (the reconciler driven directly, one pass each)."""
    k8s.create_namespaced_custom_object(*SLMD, tiny())
    first = build_memo(settings).reconciler
    first.reconcile({"metadata": {"namespace": "default", "name": "tiny"}})
    first.close()
    counted = ("serviceaccounts", "networkpolicies")
    assert [api.count("get", plural) for plural in counted] == [0, 0]
    assert [api.count("create", plural) for plural in counted] == [1, 1]
    restarted = build_memo(settings).reconciler  # an operator restart: the object has a status now
    restarted.reconcile({"metadata": {"namespace": "default", "name": "tiny"}})
    restarted.close()
    assert [api.count("get", plural) for plural in counted] == [1, 1]
    assert [api.count("create", plural) for plural in counted] == [1, 1]
