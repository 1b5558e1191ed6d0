"""One real local Ray Serve for the serving integration tests: router + two tiny vLLM revisions.

The router application has `/`; by default no revision has a route (as while a canary is live), with
`direct=GOOD` the good revision's application also takes `/v1` and routes itself (steady state).

Everything is real (Ray Serve 2.60, the vLLM CPU build, the project's tiny models, the `openai`
client); the only stand-in is the machine: CPUs instead of GPUs. The stack is shared by the whole
session because each vLLM engine takes ~30 s to start on 2 cores.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

import pytest

from slm_serving.config import (
    API_ROUTE_PREFIX,
    ENGINE_DEPLOYMENT_NAME,
    MODEL_IMPORT_PATH,
    PIN_PROOF_HEADER,
    REVISION_HEADER,
    ROUTER_APP_NAME,
    ROUTER_DEPLOYMENT_NAME,
    ROUTER_IMPORT_PATH,
    ROUTER_ROUTE_PREFIX,
    EngineConfig,
    ModelAppArgs,
    RevisionRoute,
    RouterUserConfig,
    ServeApplicationConfig,
    ServeConfigV2,
    ServeDeploymentConfig,
    revision_app_name,
)
from slm_serving.local import LocalServe
from slm_serving.pins import derive_pin_token, pin_token_digest

MODEL = "tiny"
GOOD = "good"
BAD = "bad"
DEFAULT_WEIGHTS = {GOOD: 80, BAD: 20}
PIN_TOKEN = derive_pin_token(b"serving integration tests", "tests/local/")
"""The operator's pin token for this stack (`slm_serving.pins`); its digest is in every router config."""


def pinned(revision: str) -> dict[str, str]:
    """Headers of the operator's pinned requests (golden prompts); a client without the token cannot pin."""
    return {REVISION_HEADER: revision, PIN_PROOF_HEADER: PIN_TOKEN}


def engine_application(revision: str, source: str) -> ServeApplicationConfig:
    engine = EngineConfig(
        source=source,
        served_model_name=MODEL,
        dtype="bfloat16",
        max_model_len=256,
        engine_args={"enforce_eager": True, "gpu_memory_utilization": 0.2},
    )
    return ServeApplicationConfig(
        name=revision_app_name(revision),
        route_prefix=None,
        import_path=MODEL_IMPORT_PATH,
        args=ModelAppArgs(revision=revision, engine=engine).model_dump(mode="json"),
        deployments=(
            ServeDeploymentConfig(
                name=ENGINE_DEPLOYMENT_NAME, num_replicas=1, max_ongoing_requests=64, ray_actor_options={"num_cpus": 1}
            ),
        ),
    )


def build_config(
    weights: dict[str, int],
    extra_revisions: tuple[ServeApplicationConfig, ...] = (),
    *,
    direct: str | None = None,
    **router_options: object,
) -> ServeConfigV2:
    """The router (route `/`) and the good and bad revisions (plus any extra), all with the routes
    (`weights`) as their user_config; the `direct` revision's application also takes `/v1`. Answers
    name the revision that served (`expose_revision`), so tests can see where requests went."""
    router = RouterUserConfig.model_validate(
        {
            "served_model_name": MODEL,
            "routes": [RevisionRoute(revision=r, app_name=revision_app_name(r), weight=w) for r, w in weights.items()],
            "pin_token_sha256": pin_token_digest(PIN_TOKEN),
            "expose_revision": True,
            **router_options,
        }
    ).model_dump(mode="json")
    router_app = ServeApplicationConfig(
        name=ROUTER_APP_NAME,
        route_prefix=ROUTER_ROUTE_PREFIX,
        import_path=ROUTER_IMPORT_PATH,
        deployments=(ServeDeploymentConfig(name=ROUTER_DEPLOYMENT_NAME, num_replicas=1),),
    )
    apps = [
        router_app.model_copy(
            update={"deployments": (router_app.deployments[0].model_copy(update={"user_config": router}),)}
        )
    ]
    for revision, source in ((GOOD, "tiny://good"), (BAD, "tiny://bad")):
        app = engine_application(revision, source)
        deployment = app.deployments[0].model_copy(update={"user_config": router})
        route = API_ROUTE_PREFIX if revision == direct else None
        apps.append(app.model_copy(update={"route_prefix": route, "deployments": (deployment,)}))
    return ServeConfigV2(applications=(*apps, *extra_revisions))


HAPROXY_DEFAULT_PORTS = (8404, 9101, 8500)
"""Where Ray Serve 2.60's HAProxy front end binds its stats page, its metrics and the fallback proxy
unless told otherwise (`slm_serving.local.HAPROXY_FIXED_PORTS`)."""


@contextmanager
def _ports_taken(ports: tuple[int, ...]) -> Iterator[None]:
    """Listen on `ports` (those that are free) on every interface, as another local Ray would."""
    with ExitStack() as held:
        for port in ports:
            sock = held.enter_context(socket.socket())
            with suppress(OSError):
                sock.bind(("0.0.0.0", port))
                sock.listen()
        yield


@pytest.fixture(scope="session")
def local_serve() -> Iterator[LocalServe]:
    """The session's Serve runs while HAProxy's default ports are taken: `LocalServe` must not need them."""
    with _ports_taken(HAPROXY_DEFAULT_PORTS), LocalServe() as local:
        local.apply(build_config(DEFAULT_WEIGHTS))
        yield local
