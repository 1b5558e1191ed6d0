"""Helpers for tests that run the real operator against the emulator with the real `kubernetes` client."""

from __future__ import annotations

import copy
import pathlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import kubernetes
import yaml

from slm_operator.api.crd import build_crd
from slm_operator.api.validation import validate_object
from tests.harness.emulator import EmulatorThread

ROOT = pathlib.Path(__file__).resolve().parents[2]
RAYSERVICE_CRD = ROOT / "tests" / "fixtures" / "kuberay" / "ray.io_rayservices.yaml"
TINY = ROOT / "examples" / "tiny.yaml"
SLMD = ("slm.dev", "v1alpha1", "default", "slmdeployments")
RAYS = ("ray.io", "v1", "default", "rayservices")
T = TypeVar("T")


def load_crds(api: EmulatorThread) -> None:
    """This project's CRD (validated with the project's own schema + CEL checks) and KubeRay's."""
    api.load_crd(build_crd(), validators={"v1alpha1": lambda obj: [str(e) for e in validate_object(obj)]})
    api.load_crd(RAYSERVICE_CRD)


def client_for(api: EmulatorThread) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(
        kubernetes.client.ApiClient(kubernetes.client.Configuration(host=api.url))
    )


def tiny(name: str = "tiny") -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(TINY.read_text())
    body = copy.deepcopy(body)
    body["metadata"]["name"] = name
    return body


def wait_for(
    check: Callable[[], T | None], timeout: float = 20.0, what: str = "", describe: Callable[[], object] | None = None
) -> T:
    """Poll until `check` returns something truthy; API errors count as 'not yet'. On timeout the error
    names `what`, the last result and, with `describe`, what it returns then (say, the object's status)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except kubernetes.client.ApiException as e:
            last = e
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}; last: {last!r}{_described(describe)}")


def _described(describe: Callable[[], object] | None) -> str:
    """What `describe` says now; its own failure (Serve gone, say) is reported, never raised over the timeout."""
    if describe is None:
        return ""
    try:
        return f"; now: {describe()!r}"
    except Exception as error:  # the timeout is the failure to report
        return f"; describing failed: {type(error).__name__}: {error}"


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def slmd(k8s: kubernetes.client.CustomObjectsApi, name: str = "tiny") -> dict[str, Any]:
    return k8s.get_namespaced_custom_object(*SLMD, name)  # type: ignore[no-any-return]


def rays(k8s: kubernetes.client.CustomObjectsApi, name: str = "tiny") -> dict[str, Any]:
    return k8s.get_namespaced_custom_object(*RAYS, name)  # type: ignore[no-any-return]


def names(listed: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in listed["items"]]
