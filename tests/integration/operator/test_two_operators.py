"""One writer: two operator processes (as two pods of the chart's Deployment) coordinate through kopf
peering. The one with the higher priority acts, the other waits and writes nothing; killed (SIGKILL,
as a crashed pod), the active one is replaced by the other within the peering lifetime plus a few
seconds — the bound the chart's documentation states."""

from __future__ import annotations

import pathlib
import time

import kubernetes

from tests.harness.cluster import ROOT, SLMD, client_for, rays, tiny, wait_for
from tests.harness.emulator import EmulatorThread
from tests.harness.operator_process import OperatorProcess

PEERING_CRD = ROOT / "charts" / "slm-operator" / "crds" / "kopf.dev_kopfpeerings.yaml"
LIFETIME_S = 5
TAKEOVER_BOUND_S = LIFETIME_S + 10
"""What the chart promises: a standby acts at most the peering lifetime after the active one died,
plus the time to notice (kopf re-checks when the dead record expires) and to list the objects."""


def _peers(api: EmulatorThread) -> dict[str, object]:
    found = [o for o in api.objects("kopfpeerings") if o["metadata"]["name"] == "slm-operator"]
    return dict(found[0].get("status") or {}) if found else {}


def test_the_standby_takes_over_when_the_active_operator_dies(api: EmulatorThread, tmp_path: pathlib.Path) -> None:
    api.load_crd(PEERING_CRD)
    k8s: kubernetes.client.CustomObjectsApi = client_for(api)
    k8s.create_namespaced_custom_object(
        "kopf.dev",
        "v1",
        "default",
        "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "slm-operator"}},
    )
    peering = {"SLM_PEERING_NAME": "slm-operator", "SLM_PEERING_LIFETIME_SECONDS": str(LIFETIME_S)}
    with (
        open(tmp_path / "active.log", "w") as active_log,
        open(tmp_path / "standby.log", "w") as standby_log,
        OperatorProcess(api.url, active_log, SLM_PEERING_PRIORITY="200", POD_ID="active", **peering) as active,
    ):
        wait_for(lambda: "active" in _peers(api), timeout=60, what="the active operator in the peering object")
        with OperatorProcess(api.url, standby_log, SLM_PEERING_PRIORITY="100", POD_ID="standby", **peering) as standby:
            wait_for(lambda: "standby" in _peers(api), timeout=60, what="the standby in the peering object")
            for i in range(5):
                k8s.create_namespaced_custom_object(*SLMD, tiny(f"first-{i}"))
            for i in range(5):
                wait_for(lambda n=f"first-{i}": rays(k8s, n), timeout=30)  # type: ignore[misc]
            time.sleep(2)  # anything the standby might still do would show now
            assert api.count("create", "rayservices") == 5  # one create each: the standby tried none
            assert api.count("update", "rayservices") == 0

            active.kill()
            died = time.monotonic()
            k8s.create_namespaced_custom_object(*SLMD, tiny("after"))
            wait_for(lambda: rays(k8s, "after"), timeout=TAKEOVER_BOUND_S + 30, what="the standby acting")
            took_over_s = time.monotonic() - died
            assert standby.alive()
    print(f"standby acted {took_over_s:.1f} s after the active operator was killed")
    assert took_over_s <= TAKEOVER_BOUND_S, took_over_s
    assert api.count("create", "rayservices") == 6
    assert api.count("update", "rayservices") == 0
