"""`build_local_config` and `parse_app_states`: what `LocalServe` changes in a config, and reads back."""

from __future__ import annotations

from slm_serving.config import (
    ROUTER_APP_NAME,
    HTTPOptions,
    ServeApplicationConfig,
    ServeAutoscalingConfig,
    ServeConfigV2,
    ServeDeploymentConfig,
)
from slm_serving.local import AppState, build_local_config, parse_app_states


def _config(*revision_envs: dict[str, str] | None) -> ServeConfigV2:
    apps = [ServeApplicationConfig(name=ROUTER_APP_NAME, route_prefix="/", import_path="m:router")]
    for i, env in enumerate(revision_envs):
        runtime_env = {"env_vars": dict(env)} if env is not None else None
        apps.append(
            ServeApplicationConfig(name=f"rev-{i}", route_prefix=None, import_path="m:model", runtime_env=runtime_env)
        )
    return ServeConfigV2(http_options=HTTPOptions(port=8000), applications=tuple(apps))


def test_each_engine_gets_its_own_core_and_the_router_none() -> None:
    local = build_local_config(_config(None, None, None), port=1234, cpu_count=2)
    assert local.http_options == HTTPOptions(host="127.0.0.1", port=1234)
    router, *revisions = local.applications
    assert router.runtime_env is None
    binds = [r.runtime_env["env_vars"]["VLLM_CPU_OMP_THREADS_BIND"] for r in revisions]  # type: ignore[index,call-overload]
    assert binds == ["0", "1", "0"]


def test_a_revision_that_may_scale_out_is_left_unbound() -> None:
    autoscaled = ServeDeploymentConfig(
        name="LLMEngine",
        autoscaling_config=ServeAutoscalingConfig(
            min_replicas=1, max_replicas=3, target_ongoing_requests=2, upscale_delay_s=1, downscale_delay_s=1
        ),
    )
    fixed = ServeDeploymentConfig(name="LLMEngine", num_replicas=1)
    config = _config(None, None, None)
    router, first, second, third = config.applications
    apps = (
        router,
        first.model_copy(update={"deployments": (autoscaled,)}),
        second.model_copy(update={"deployments": (fixed,)}),
        third.model_copy(update={"deployments": (fixed.model_copy(update={"num_replicas": 2}),)}),
    )
    local = build_local_config(config.model_copy(update={"applications": apps}), port=1, cpu_count=2)
    binds = [a.runtime_env["env_vars"]["VLLM_CPU_OMP_THREADS_BIND"] for a in local.applications[1:]]  # type: ignore[index,call-overload]
    assert binds == ["nobind", "1", "nobind"]


def test_env_given_in_the_config_wins() -> None:
    local = build_local_config(_config({"VLLM_CPU_KVCACHE_SPACE": "4", "X": "y"}), port=1, cpu_count=4)
    env = local.applications[1].runtime_env["env_vars"]  # type: ignore[index]
    assert env == {"VLLM_CPU_OMP_THREADS_BIND": "0", "VLLM_CPU_KVCACHE_SPACE": "4", "X": "y"}


def test_input_config_is_not_changed() -> None:
    original = _config(None)
    build_local_config(original, port=1, cpu_count=1)
    assert original.applications[1].runtime_env is None
    assert original.http_options.port == 8000


def test_parse_app_states() -> None:
    details = {
        "applications": {
            "router": {"status": "RUNNING", "message": ""},
            "rev-a": {
                "status": "DEPLOY_FAILED",
                "message": "boom",
                "deployments": {
                    "LLMEngine": {"status": "DEPLOY_FAILED", "message": "ModelSourceError: missing"},
                    "Other": {"status": "HEALTHY", "message": "fine"},
                },
            },
            "rev-b": {"status": "DEPLOYING", "message": None},
        }
    }
    assert parse_app_states(details) == [
        AppState(name="router", status="RUNNING", message=""),
        AppState(name="rev-a", status="DEPLOY_FAILED", message="boom\nLLMEngine: ModelSourceError: missing"),
        AppState(name="rev-b", status="DEPLOYING", message=""),
    ]
    assert parse_app_states({"applications": None}) == []
