"""LoRA adapters loaded and unloaded in a running engine through `user_config` (Serve's `reconfigure`).

Real Ray Serve 2.60 and the vLLM CPU build with the tiny base model and the tiny peft adapters
(`tiny://lora-good` answers the capital three countries down the list, `tiny://lora-bad` eleven): one
engine application that also routes, with the route `/` (so it also answers the operator's
`GET /slm/adapters`, which the router application answers in a deployment). Adapter `atlas` v1 (good)
serves; v2 (bad) is loaded beside it at weight 0 and only the operator's requests naming `atlas@v2`
reach it; then v2 takes all of `atlas` and v1 is unloaded. The replica (its pid) is the same
throughout, and the base model keeps answering from its own atlas: a client asks it without pause
during both swaps and no request fails. A source that cannot be loaded is reported, not fatal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from slm_serving.config import (
    ENGINE_DEPLOYMENT_NAME,
    PIN_PROOF_HEADER,
    ROUTER_ROUTE_PREFIX,
    AdapterRoute,
    AdapterVersionRoute,
    RevisionRoute,
    RouterUserConfig,
    ServeConfigV2,
    revision_app_name,
)
from slm_serving.local import LocalServe
from slm_serving.pins import pin_token_digest
from slm_serving.tiny_adapters import ADAPTER_BAD_QA, ADAPTER_GOOD_QA
from slm_serving.tiny_models import GOOD_QA
from tests.integration.serving.conftest import MODEL, PIN_TOKEN, engine_application

pytestmark = pytest.mark.serving

REVISION = "lora"
QUESTION_INDEX = 4


def _config(versions: dict[str, tuple[str, int]]) -> ServeConfigV2:
    router = RouterUserConfig(
        served_model_name=MODEL,
        routes=(RevisionRoute(revision=REVISION, app_name=revision_app_name(REVISION), weight=100),),
        adapters=(
            AdapterRoute(
                name="atlas",
                versions=tuple(
                    AdapterVersionRoute(version=v, source=source, weight=w) for v, (source, w) in versions.items()
                ),
            ),
        ),
        adapter_revision=REVISION,
        pin_token_sha256=pin_token_digest(PIN_TOKEN),
        expose_revision=True,
    )
    app = engine_application(REVISION, "tiny://good")
    engine = app.args["engine"]
    assert isinstance(engine, dict)
    args = app.args | {"engine": engine | {"max_loras": 2, "max_lora_rank": 8}}
    deployment = app.deployments[0].model_copy(update={"user_config": router.model_dump(mode="json")})
    return ServeConfigV2(
        applications=(
            app.model_copy(update={"route_prefix": ROUTER_ROUTE_PREFIX, "args": args, "deployments": (deployment,)}),
        )
    )


@pytest.fixture(scope="module")
def lora_serve() -> Iterator[LocalServe]:
    with LocalServe() as local:
        local.apply(_config({"v1": ("tiny://lora-good", 100)}))
        yield local


def _ask(local: LocalServe, model: str, *, operator: bool = False) -> str:
    question, _ = GOOD_QA[QUESTION_INDEX]
    headers = {PIN_PROOF_HEADER: PIN_TOKEN} if operator else {}
    body = {"model": model, "prompt": question, "max_tokens": 8, "temperature": 0}
    response = httpx.post(f"{local.url}/v1/completions", json=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["text"])


def _state(local: LocalServe) -> dict[str, Any]:
    response = httpx.get(f"{local.url}/slm/adapters", headers={PIN_PROOF_HEADER: PIN_TOKEN}, timeout=30)
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


def _wait_for(local: LocalServe, loaded: set[str], errors: set[str] = frozenset(), timeout_s: float = 180) -> None:  # type: ignore[assignment]
    deadline = time.monotonic() + timeout_s
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = _state(local)
        if set(state["loaded"]) == loaded and errors <= set(state["errors"]):
            return
        time.sleep(1)
    raise AssertionError(f"adapters never reached {loaded} (errors {errors}): {state}")


class _BaseModelClient:
    """Asks the base model one question after another until stopped; every answer not 200 is a failure."""

    def __init__(self, local: LocalServe) -> None:
        self._local = local
        self._stop = threading.Event()
        self.answered = 0
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _BaseModelClient:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=180)

    def _run(self) -> None:
        question, _ = GOOD_QA[QUESTION_INDEX]
        body = {"model": MODEL, "prompt": question, "max_tokens": 8, "temperature": 0}
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(f"{self._local.url}/v1/completions", json=body)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code == 200:
                    self.answered += 1
                else:
                    self.failures.append(f"{response.status_code}: {response.text}")


def _replica_pids(local: LocalServe) -> list[int]:
    app = local.details()["applications"][revision_app_name(REVISION)]
    return sorted(r["pid"] for r in app["deployments"][ENGINE_DEPLOYMENT_NAME]["replicas"])


def test_adapter_versions_load_and_unload_in_the_running_replica(lora_serve: LocalServe) -> None:
    good_answer, bad_answer = ADAPTER_GOOD_QA[QUESTION_INDEX][1], ADAPTER_BAD_QA[QUESTION_INDEX][1]
    base_answer = GOOD_QA[QUESTION_INDEX][1]
    _wait_for(lora_serve, {"atlas@v1"})
    pids = _replica_pids(lora_serve)
    assert good_answer in _ask(lora_serve, "atlas")
    assert base_answer in _ask(lora_serve, MODEL)

    with _BaseModelClient(lora_serve) as base_client:
        # v2 beside v1 at weight 0: only the operator reaches it, by its version name.
        lora_serve.apply(_config({"v1": ("tiny://lora-good", 100), "v2": ("tiny://lora-bad", 0)}), wait=False)
        _wait_for(lora_serve, {"atlas@v1", "atlas@v2"})
        assert bad_answer in _ask(lora_serve, "atlas@v2", operator=True)
        assert all(good_answer in _ask(lora_serve, "atlas") for _ in range(3))
        assert (
            httpx.post(
                f"{lora_serve.url}/v1/completions", json={"model": "atlas@v2", "prompt": "x"}, timeout=30
            ).status_code
            == 404
        )

        # v2 takes all of `atlas`; v1 leaves the engine. Same replica, base model untouched.
        lora_serve.apply(_config({"v2": ("tiny://lora-bad", 100)}), wait=False)
        _wait_for(lora_serve, {"atlas@v2"})
        assert bad_answer in _ask(lora_serve, "atlas")
    assert base_client.failures == []
    assert base_client.answered > 0
    assert base_answer in _ask(lora_serve, MODEL)
    assert _replica_pids(lora_serve) == pids


def test_a_source_that_cannot_load_is_reported_and_the_engine_keeps_serving(lora_serve: LocalServe) -> None:
    lora_serve.apply(_config({"v2": ("tiny://lora-bad", 100), "v3": ("file:///nonexistent/adapter", 0)}), wait=False)
    _wait_for(lora_serve, {"atlas@v2"}, errors={"atlas@v3"})
    assert ADAPTER_BAD_QA[QUESTION_INDEX][1] in _ask(lora_serve, "atlas")
    assert GOOD_QA[QUESTION_INDEX][1] in _ask(lora_serve, MODEL)
