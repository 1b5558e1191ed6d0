"""A spec whose golden prompt carries a catastrophic regex (`([a-z]+)+$`) does not freeze the real kopf
operator: under Python's `re` that pattern against a 40-character answer never returns and holds the GIL.

The operator validates each new generation (the regex is compiled under RE2 there) and reconciles the
other objects beside it, while `/healthz` keeps answering. The golden-prompt match on a real answer,
through the probe loop, the router and a vLLM revision, is tests/integration/serving/test_golden_prompts.py
(it needs Ray Serve, which this test does not start).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import kopf
import kubernetes
import pytest

from slm_operator.api.models import Expectation
from slm_operator.runner import operator_in_thread
from slm_operator.settings import OperatorSettings
from slm_serving.expectations import check_answer
from tests.harness.cluster import SLMD, rays, tiny, wait_for

HOSTILE = "([a-z]+)+$"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def operator_with_health(settings: OperatorSettings) -> Iterator[tuple[kopf.Memo, int]]:
    port = _free_port()
    with operator_in_thread(settings.model_copy(update={"health_port": port})) as memo:
        yield memo, port


@pytest.mark.timeout(120)
def test_a_catastrophic_regex_does_not_freeze_the_operator(
    k8s: kubernetes.client.CustomObjectsApi, operator_with_health: tuple[kopf.Memo, int]
) -> None:
    _, port = operator_with_health
    hostile = tiny("hostile")
    for prompt in hostile["spec"]["rollout"]["validation"]["prompts"]:
        prompt["expect"] = {"regex": HOSTILE}
    k8s.create_namespaced_custom_object(*SLMD, hostile)
    k8s.create_namespaced_custom_object(*SLMD, tiny("neighbour"))
    wait_for(lambda: rays(k8s, "hostile"), what="the hostile object's RayService")
    wait_for(lambda: rays(k8s, "neighbour"), what="the neighbour's RayService")
    assert not check_answer("a" * 40 + "!", Expectation(regex=HOSTILE)).passed  # returns: RE2 is linear
    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert health.status_code == 200
    k8s.create_namespaced_custom_object(*SLMD, tiny("after"))
    wait_for(lambda: rays(k8s, "after"), what="an object created afterwards is reconciled too")
