"""SLMDeployment → operator → RayService → (KubeRay stand-in) → Ray Serve + vLLM, end to end.

The real kopf operator runs against the API emulator; `tests.harness.kuberay.KubeRayStandIn` plays
KubeRay (documented there: it applies serveConfigV2 to a local Ray Serve through Serve's REST API and
reports application statuses). Everything else is real: vLLM (CPU build) on the tiny models, the
router, the golden-prompt probes and the rollout state machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import kubernetes
import pytest
from openai import OpenAI
from pydantic import SecretStr

from slm_operator.demo import TrafficStats, generate_load
from slm_operator.runner import operator_in_thread
from slm_operator.settings import OperatorSettings
from slm_serving.local import LocalServe
from tests.harness.cluster import SLMD, condition, slmd, tiny, wait_for
from tests.harness.emulator import EmulatorThread
from tests.harness.kuberay import KubeRayStandIn

pytestmark = pytest.mark.serving
ROLLOUT_TIMEOUT = 600.0


@pytest.fixture(scope="module")
def local() -> Iterator[LocalServe]:
    with LocalServe() as serve:
        yield serve


@contextmanager
def _stopped_at_exit(stop: threading.Event) -> Iterator[threading.Event]:
    """Sets `stop` when the block ends, failed or not: a load thread never outlives its test."""
    try:
        yield stop
    finally:
        stop.set()


def _settings(base: OperatorSettings, local: LocalServe) -> OperatorSettings:
    """The emulator's settings, pointed at the local Ray Serve for golden prompts, metrics and replicas."""
    return base.model_copy(
        update={
            "router_url_template": local.url,
            "dashboard_url_template": local.dashboard_url,
            "dashboard_token": SecretStr(local.dashboard_token) if local.dashboard_token else None,
            "rollout_interval_seconds": 1,
            "routes_settle_seconds": 10,  # the default: the router must reconfigure before a revision goes
        }
    )


def _explain(
    k8s: kubernetes.client.CustomObjectsApi, local: LocalServe, kuberay: KubeRayStandIn
) -> Callable[[], object]:
    """What a timed-out wait reports: the SLMDeployment's status, Serve's applications, the stand-in's errors."""

    def explain() -> object:
        applications = local.details().get("applications") or {}
        return {
            "status": slmd(k8s).get("status"),
            "serve": {name: app.get("status") for name, app in applications.items()},
            "kuberay errors": kuberay.errors[-5:],
        }

    return explain


def _in_traffic_step(k8s: kubernetes.client.CustomObjectsApi) -> bool:
    """The rollout reached a traffic step; fails at once if the good canary was rolled back instead."""
    status: dict[str, Any] = slmd(k8s)["status"]
    degraded = _condition(status, "Degraded")
    assert degraded.get("status") != "True", f"the good canary was not given traffic: {status}"
    return status.get("phase") == "Progressing"


def _reasons(api: EmulatorThread) -> list[str]:
    return [e["reason"] for e in api.objects("events")]


def test_create_serve_promote_good_roll_back_bad_and_survive_a_restart(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, local: LocalServe, settings: OperatorSettings
) -> None:
    settings = _settings(settings, local)
    stats = TrafficStats()
    with _stopped_at_exit(threading.Event()) as stop_load, KubeRayStandIn(k8s, local, "tiny") as kuberay:
        explain = _explain(k8s, local, kuberay)
        with operator_in_thread(settings):
            deployment = tiny()
            deployment["spec"]["router"] = {"exposeRevision": True}  # so the load generator sees who served
            k8s.create_namespaced_custom_object(*SLMD, deployment)
            # Replica counts come from Serve's REST API on the head (the dashboard), per revision, read in
            # the background: they reach the status on the pass after the first Ready.
            ready = wait_for(
                lambda: (
                    (o := slmd(k8s)).get("status", {}).get("phase") == "Ready"
                    and all(r.get("desiredReplicas") is not None for r in o["status"]["revisions"])
                    and o
                ),
                ROLLOUT_TIMEOUT,
                "Ready",
                explain,
            )
            (serving,) = ready["status"]["revisions"]
            assert (serving["readyReplicas"], serving.get("desiredReplicas")) == (1, 1), serving
            first = ready["status"]["stableRevision"]
            answer = OpenAI(base_url=f"{local.url}/v1", api_key="unused").completions.create(
                model="tiny", prompt="What is the capital of France?", max_tokens=8, temperature=0
            )
            assert "Paris" in answer.choices[0].text

            load = threading.Thread(target=generate_load, args=(local.url, "tiny", stats, stop_load), daemon=True)
            load.start()
            # A good new revision: validated, then given traffic step by step ...
            k8s.patch_namespaced_custom_object(*SLMD, "tiny", {"spec": {"model": {"engineArgs": {"max_num_seqs": 32}}}})
            wait_for(lambda: _in_traffic_step(k8s), ROLLOUT_TIMEOUT, "a traffic step", explain)
        # ... the operator is stopped mid-rollout and a new one resumes from status alone.
        with operator_in_thread(settings):
            promoted = wait_for(
                lambda: (
                    (o := slmd(k8s))["status"]["stableRevision"] != first
                    and not o["status"].get("canaryRevision")
                    and o
                ),
                ROLLOUT_TIMEOUT,
                "promotion",
                explain,
            )
            good = promoted["status"]["stableRevision"]
            # The cost of its last step (100 %: no stable traffic, so figures only), from the router's token totals.
            cost = promoted["status"]["lastCost"]
            (canary_cost, _) = cost["revisions"]
            assert (cost["revision"], cost["weight"], cost["outcome"]) == (good, 100, "NotCompared"), cost
            assert canary_cost["completionTokens"] > 0 and canary_cost["promptTokens"] > 0, cost
            assert canary_cost["accelerator"] == "cpu" and canary_cost["acceleratorSeconds"] > 0, cost
            assert canary_cost["costPerMillionOutputTokens"] > 0, cost
            wait_for(lambda: "Promoted" in _reasons(api), 30, "the Promoted event")  # events are posted async

            # A bad revision answers wrongly: rolled back before any user traffic reaches it.
            k8s.patch_namespaced_custom_object(*SLMD, "tiny", {"spec": {"model": {"source": "tiny://bad"}}})
            rolled_back = wait_for(
                lambda: (
                    (o := slmd(k8s))
                    and (c := condition(o, "Degraded"))
                    and c["status"] == "True"
                    and c["reason"] == "RolledBack"
                    and o
                ),
                ROLLOUT_TIMEOUT,
                "rollback",
                explain,
            )
            wait_for(lambda: "RolledBack" in _reasons(api), 30, "the RolledBack event")
            stop_load.set()
            load.join(60)
    status = rolled_back["status"]
    assert status["stableRevision"] == good
    validation = status["lastValidation"]
    assert validation["passed"] is False and validation["revision"] != good
    failing = [r for r in validation["results"] if not r["passed"]]
    assert failing and all(r["answer"] for r in failing)  # what the bad model answered is recorded
    assert stats.ok > 0 and validation["revision"] not in stats.by_revision  # users never saw it
    assert not kuberay.errors or all("409" in e for e in kuberay.errors), kuberay.errors[:3]
    assert stats.failed == 0, stats.failures[:5]  # zero failed user requests


UNLOADABLE = "pvc://models/no-such-model"
"""A claim mounted without the model: the replica's constructor fails in seconds (`model_source`), no network."""
CAUSE = f"ModelSourceError: model source '{UNLOADABLE}': /mnt/models/models/no-such-model does not exist"
"""The shortened error: the exception line of the replica's traceback, without the module."""


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return condition({"status": status}, type_) or {}


def test_a_canary_whose_replicas_cannot_start_shows_why_at_once_and_is_rolled_back(
    api: EmulatorThread, k8s: kubernetes.client.CustomObjectsApi, local: LocalServe, settings: OperatorSettings
) -> None:
    """The canary's model cannot be loaded; Serve 2.60 tries min(20, 3 x 1 replica) = 3 starts, then
    gives up. The shortened cause is in the canary's status entry, a Progressing condition and one
    Warning Event while Serve still retries (not one per retry); once Serve gives up the rollout is
    rolled back with that cause, and the stable answers every user request meanwhile. The stable is
    the previous test's last one, so this module's Serve already runs it."""
    settings = _settings(settings, local)
    stats = TrafficStats()
    failing: list[dict[str, Any]] = []

    def rolled_back() -> dict[str, Any] | None:
        """Also keeps the first status that says the canary fails to start (it lasts while Serve retries)."""
        status: dict[str, Any] = slmd(k8s)["status"]
        if not failing and _condition(status, "Progressing").get("reason") == "ReplicaStartFailing":
            failing.append(status)
        degraded = _condition(status, "Degraded")
        return status if (degraded.get("status"), degraded.get("reason")) == ("True", "RolledBack") else None

    with (
        _stopped_at_exit(threading.Event()) as stop_load,
        KubeRayStandIn(k8s, local, "tiny") as kuberay,
        operator_in_thread(settings),
    ):
        deployment = tiny()
        deployment["spec"]["router"] = {"exposeRevision": True}
        deployment["spec"]["model"]["engineArgs"]["max_num_seqs"] = 32
        k8s.create_namespaced_custom_object(*SLMD, deployment)
        ready = wait_for(lambda: (o := slmd(k8s)).get("status", {}).get("phase") == "Ready" and o, ROLLOUT_TIMEOUT)
        stable = ready["status"]["stableRevision"]
        load = threading.Thread(target=generate_load, args=(local.url, "tiny", stats, stop_load), daemon=True)
        load.start()
        k8s.patch_namespaced_custom_object(*SLMD, "tiny", {"spec": {"model": {"source": UNLOADABLE}}})
        final = wait_for(rolled_back, ROLLOUT_TIMEOUT, "the rollback", _explain(k8s, local, kuberay))
        wait_for(lambda: "RolledBack" in _reasons(api), 30, "the RolledBack event")  # events are posted async
        stop_load.set()
        load.join(60)
    assert failing, final
    (first,) = failing
    canary = first["canaryRevision"]
    assert canary != stable and CAUSE in _condition(first, "Progressing")["message"], first
    entries = {r["name"]: r for r in first["revisions"]}
    assert entries[canary].get("startFailure") == CAUSE and "startFailure" not in entries[stable], entries
    events = sorted(api.objects("events"), key=lambda e: int(e["metadata"]["resourceVersion"]))
    reasons = [e["reason"] for e in events]
    assert reasons.count("ReplicaStartFailing") == 1 and reasons.count("RolledBack") == 1, reasons
    start, back = events[reasons.index("ReplicaStartFailing")], events[reasons.index("RolledBack")]
    assert CAUSE in start["message"] and "Serve retries" in start["message"], start  # before Serve gave up
    assert reasons.index("ReplicaStartFailing") < reasons.index("RolledBack"), reasons
    assert CAUSE in back["message"] and "Serve gave up" in back["message"], back
    assert final["stableRevision"] == stable and not final.get("canaryRevision"), final
    assert CAUSE in _condition(final, "Degraded")["message"], final
    assert stats.ok > 0 and canary not in stats.by_revision, stats.by_revision
    assert not kuberay.errors or all("409" in e for e in kuberay.errors), kuberay.errors[:3]
    assert stats.failed == 0, stats.failures[:5]  # zero failed user requests
