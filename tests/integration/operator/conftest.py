"""Fixtures: an API server emulator with this project's CRD and KubeRay's RayService CRD, and the
real kopf operator running in-process against it. The emulator stands in for the cluster, which
cannot run here (no Docker, no kube-apiserver).

`api`, `k8s` and `settings` are fresh for each test. Modules whose tests only send objects that are
refused or judged without being stored (the validation tables) share one per module instead:
`module_api`, `module_k8s`, `module_settings`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import kopf
import kubernetes
import pytest
from pydantic import SecretStr

from slm_operator.runner import operator_in_thread
from slm_operator.settings import OperatorSettings
from tests.harness.cluster import client_for, load_crds
from tests.harness.emulator import EmulatorThread
from tests.harness.kuberay import KubeRayWatch


@contextlib.contextmanager
def _emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emulator:
        load_crds(emulator)
        yield emulator


def _settings_for(api: EmulatorThread) -> OperatorSettings:
    return OperatorSettings(
        kube_server=api.url,
        namespaces="default",
        peering_name="",
        metrics_port=0,
        health_port=0,
        log_format="text",
        dashboard_url_template="",  # no Ray here: replicas are estimated from KubeRay's application states
        pin_key=SecretStr("operator-tests-pin-key"),  # as the chart sets it: restarts derive the same tokens
    )


@pytest.fixture
def api() -> Iterator[EmulatorThread]:
    with _emulator() as emulator:
        yield emulator


@pytest.fixture
def k8s(api: EmulatorThread) -> kubernetes.client.CustomObjectsApi:
    return client_for(api)


@pytest.fixture
def settings(api: EmulatorThread) -> OperatorSettings:
    return _settings_for(api)


@pytest.fixture(scope="module")
def module_api() -> Iterator[EmulatorThread]:
    with _emulator() as emulator:
        yield emulator


@pytest.fixture(scope="module")
def module_k8s(module_api: EmulatorThread) -> kubernetes.client.CustomObjectsApi:
    return client_for(module_api)


@pytest.fixture(scope="module")
def module_settings(module_api: EmulatorThread) -> OperatorSettings:
    return _settings_for(module_api)


@pytest.fixture
def kuberay(k8s: kubernetes.client.CustomObjectsApi) -> Iterator[KubeRayWatch]:
    """KubeRay's rules on every RayService write: the test fails on an undeclared new RayCluster, a
    change KubeRay would not apply, or an object KubeRay's CRD refuses."""
    with KubeRayWatch(k8s) as watch:
        yield watch


@pytest.fixture
def operator(settings: OperatorSettings, kuberay: KubeRayWatch) -> Iterator[kopf.Memo]:
    with operator_in_thread(settings) as memo:
        yield memo
