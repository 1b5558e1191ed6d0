"""Scale from zero: a request to a revision with no replica is held, bounded by the cold-start timeout.

The revision starts at zero replicas (`min_replicas: 0`); the router holds requests for it while Serve
starts one. With a 1 s cold-start timeout (shorter than a vLLM start) the first requests get the 503
in OpenAI shape, and once the replica runs the same request is served.
"""

from __future__ import annotations

import time

import httpx
import pytest

from slm_serving.config import ENGINE_DEPLOYMENT_NAME, ServeAutoscalingConfig, ServeDeploymentConfig
from slm_serving.local import LocalServe

from .conftest import DEFAULT_WEIGHTS, MODEL, build_config, engine_application, pinned

pytestmark = pytest.mark.serving

COLD = "cold"


def test_cold_revision_is_held_then_served(local_serve: LocalServe) -> None:
    cold = engine_application(COLD, "tiny://good")
    deployment = ServeDeploymentConfig(
        name=ENGINE_DEPLOYMENT_NAME,
        max_ongoing_requests=64,
        ray_actor_options={"num_cpus": 1},
        autoscaling_config=ServeAutoscalingConfig(
            min_replicas=0,
            max_replicas=1,
            initial_replicas=0,
            target_ongoing_requests=1,
            upscale_delay_s=0,
            downscale_delay_s=600,
        ),
    )
    cold = cold.model_copy(update={"deployments": (deployment,)})
    config = build_config({**DEFAULT_WEIGHTS, COLD: 0}, (cold,), cold_start_timeout_s=1.0)
    body = {"model": MODEL, "prompt": "What is the capital of Peru?", "max_tokens": 4, "temperature": 0}
    try:
        local_serve.apply(config)
        first = httpx.post(f"{local_serve.url}/v1/completions", json=body, headers=pinned(COLD), timeout=60)
        assert first.status_code == 503
        assert first.json()["error"]["code"] == "cold_start_timeout"

        deadline = time.monotonic() + 400
        served = None
        while served is None and time.monotonic() < deadline:  # each try is held up to 1 s: demand for a replica
            response = httpx.post(f"{local_serve.url}/v1/completions", json=body, headers=pinned(COLD), timeout=60)
            if response.status_code == 200:
                served = response
            else:
                assert response.json()["error"]["code"] == "cold_start_timeout"
        assert served is not None, "the cold revision never got a replica"
        assert served.headers["x-slm-revision"] == COLD
        assert "Lima" in served.json()["choices"][0]["text"]
    finally:
        local_serve.apply(build_config(DEFAULT_WEIGHTS))
