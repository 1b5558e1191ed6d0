"""The pure builders: SLMDeployment (+ rollout status) → serveConfigV2 and RayService."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from slm_operator.api.models import AutoscalingSpec, RevisionStatus, RouterSpec, SLMDeployment, SLMDeploymentStatus
from slm_operator.api.revision import compute_revision, revision_template
from slm_operator.api.validation import SchemaValidator, parse_deployment
from slm_operator.builder.rayservice import build_rayservice
from slm_operator.builder.revisions import split_replica_budget
from slm_operator.builder.serve_config import ENGINE_GRACEFUL_SHUTDOWN_S, build_serve_config, direct_revision
from slm_operator.builder.worker_groups import WORKER_GROUP_MAX_REPLICAS, worker_group_name, worker_pod_settings
from slm_operator.canary_pin import PinKey
from slm_serving.config import (
    API_ROUTE_PREFIX,
    FRONT_END_ENV,
    MODEL_IMPORT_PATH,
    ROUTER_APP_NAME,
    ROUTER_IMPORT_PATH,
    ROUTER_ROUTE_PREFIX,
    FrontEnd,
    ModelAppArgs,
    RouterUserConfig,
    revision_app_name,
)
from tests.conftest import EXAMPLES, REPO_ROOT

KUBERAY_CRD = REPO_ROOT / "tests" / "fixtures" / "kuberay" / "ray.io_rayservices.yaml"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def _load(path: Path, uid: str | None = "0b6c-uid") -> SLMDeployment:
    obj = yaml.safe_load(path.read_text())
    obj["metadata"].setdefault("namespace", "default")
    if uid:
        obj["metadata"]["uid"] = uid
    return parse_deployment(obj)


@cache
def _rayservice_validator() -> SchemaValidator:
    crd = yaml.safe_load(KUBERAY_CRD.read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return SchemaValidator(v1["schema"]["openAPIV3Schema"])


def _with_canary(deployment: SLMDeployment, weight: int, new_source: str) -> SLMDeployment:
    """The deployment after its spec moved to `new_source` while the old revision stays stable."""
    stable = revision_template(deployment.spec)
    spec = deployment.spec.model_copy(deep=True)
    spec.model.source = new_source
    canary = revision_template(spec)
    status = SLMDeploymentStatus(
        stable_revision=compute_revision(deployment.spec),
        canary_revision=compute_revision(spec),
        revisions=[
            RevisionStatus(name=compute_revision(deployment.spec), role="stable", weight=100 - weight, template=stable),
            RevisionStatus(name=compute_revision(spec), role="canary", weight=weight, template=canary),
        ],
    )
    return deployment.model_copy(update={"spec": spec, "status": status})


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_rendered_rayservice_validates_against_kuberay_crd(path: Path) -> None:
    rayservice = build_rayservice(_load(path))
    assert _rayservice_validator().errors(rayservice) == []


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_rayservice_during_a_canary_validates_too(path: Path) -> None:
    deployment = _with_canary(_load(path), 20, "hf://org/next-model")
    assert _rayservice_validator().errors(build_rayservice(deployment)) == []


def test_rayservice_metadata_and_ownership() -> None:
    deployment = _load(EXAMPLES / "phi3-mini.yaml")
    rayservice = build_rayservice(deployment)
    meta = rayservice["metadata"]
    assert (meta["name"], meta["namespace"]) == ("phi3-mini", "llm")
    (owner,) = meta["ownerReferences"]
    assert owner == {
        "apiVersion": "slm.dev/v1alpha1",
        "kind": "SLMDeployment",
        "name": "phi3-mini",
        "uid": "0b6c-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert meta["annotations"]["slm.dev/revisions"] == compute_revision(deployment.spec)
    assert meta["labels"]["slm.dev/name"] == "phi3-mini"


def test_without_uid_there_is_no_owner_reference() -> None:
    assert "ownerReferences" not in build_rayservice(_load(EXAMPLES / "tiny.yaml", uid=None))["metadata"]


def _serve(deployment: SLMDeployment) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(build_rayservice(deployment)["spec"]["serveConfigV2"])
    return document


def test_serve_config_during_a_canary_sends_everything_through_the_router_app() -> None:
    deployment = _with_canary(_load(EXAMPLES / "qwen2.5-lora.yaml"), 10, "hf://Qwen/Qwen2.5-0.5B")
    apps = {a["name"]: a for a in _serve(deployment)["applications"]}
    stable, canary = (r.name for r in deployment.status.revisions)  # type: ignore[union-attr]
    assert set(apps) == {ROUTER_APP_NAME, revision_app_name(stable), revision_app_name(canary)}
    assert [name for name, app in apps.items() if app["route_prefix"] is not None] == [ROUTER_APP_NAME]
    router_app = apps[ROUTER_APP_NAME]
    assert router_app["route_prefix"] == ROUTER_ROUTE_PREFIX and router_app["import_path"] == ROUTER_IMPORT_PATH
    router = RouterUserConfig.model_validate(router_app["deployments"][0]["user_config"])
    assert {(r.revision, r.app_name, r.weight) for r in router.routes} == {
        (stable, revision_app_name(stable), 90),
        (canary, revision_app_name(canary), 10),
    }
    assert router.served_model_name == deployment.spec.model.served_model_name
    assert [a.name for a in router.adapters] == ["sql-writer", "support-tickets"]
    assert router.adapter_revision == stable  # adapter requests are answered by the stable's engines
    for name in (stable, canary):  # every engine carries the routes: any of them can take the HTTP route
        assert (
            apps[revision_app_name(name)]["deployments"][0]["user_config"]
            == router_app["deployments"][0]["user_config"]
        )
    app = apps[revision_app_name(canary)]
    assert app["route_prefix"] is None and app["import_path"] == MODEL_IMPORT_PATH
    args = ModelAppArgs.model_validate(app["args"])
    assert args.revision == canary and args.engine.source == "hf://Qwen/Qwen2.5-0.5B"
    # LoRA capacity derived from spec.adapters: old + new version of both, the largest rank (32).
    assert (args.engine.max_loras, args.engine.max_lora_rank) == (4, 32)
    assert args.engine.engine_args == {}


def _promoted(deployment: SLMDeployment) -> SLMDeployment:
    """After promotion: the canary is stable at 100 %, the old stable drains at 0 %."""
    assert deployment.status is not None
    old, new = deployment.status.revisions
    status = SLMDeploymentStatus(
        stable_revision=new.name,
        revisions=[
            new.model_copy(update={"role": "stable", "weight": 100}),
            old.model_copy(update={"role": "stable", "weight": 0}),
        ],
    )
    return deployment.model_copy(update={"status": status})


def _may_scale_to_zero(deployment: SLMDeployment) -> SLMDeployment:
    autoscaling = deployment.spec.autoscaling.model_copy(update={"min_replicas": 0, "scale_to_zero": True})
    return deployment.model_copy(update={"spec": deployment.spec.model_copy(update={"autoscaling": autoscaling})})


@pytest.mark.parametrize(
    ("state", "direct"),
    [
        ("fresh", "stable"),  # no status yet: the spec's own revision
        ("steady", "stable"),
        ("canary", None),
        ("canary at 0 %", None),  # validation: pinned prompts to both, compared fairly
        ("promoted, old draining", "new"),
        ("steady, may scale to zero", None),  # the router holds requests at zero, within bounds
    ],
)
def test_the_stable_revision_takes_v1_itself_except_during_canaries_and_at_zero(state: str, direct: str | None) -> None:
    base = _load(EXAMPLES / "tiny.yaml", uid=None)
    canary = _with_canary(base, 0 if state == "canary at 0 %" else 20, "tiny://bad")
    stable = RevisionStatus(
        name=compute_revision(base.spec), role="stable", weight=100, template=revision_template(base.spec)
    )
    steady = base.model_copy(update={"status": SLMDeploymentStatus(stable_revision=stable.name, revisions=[stable])})
    deployment = {
        "fresh": base,
        "steady": steady,
        "canary": canary,
        "canary at 0 %": canary,
        "promoted, old draining": _promoted(canary),
        "steady, may scale to zero": _may_scale_to_zero(steady),
    }[state]
    expected = {"stable": compute_revision(base.spec), "new": compute_revision(canary.spec), None: None}[direct]
    assert direct_revision(deployment.spec, deployment.status) == expected
    routes = {a.name: a.route_prefix for a in build_serve_config(deployment.spec, deployment.status).applications}
    assert routes.pop(ROUTER_APP_NAME) == ROUTER_ROUTE_PREFIX  # always: the fallback for every request
    assert routes == {name: API_ROUTE_PREFIX if expected == name.removeprefix("rev-") else None for name in routes}


@pytest.mark.parametrize(
    ("gpus", "actor_options", "bundles"),
    [
        (0, {"num_cpus": 1}, None),
        (1, {"num_cpus": 1, "num_gpus": 1}, None),
        (4, None, [{"GPU": 1.0, "CPU": 1.0}] * 4),
    ],
)
def test_gpus_per_replica(gpus: int, actor_options: dict[str, Any] | None, bundles: list[Any] | None) -> None:
    deployment = _load(EXAMPLES / "phi3-mini.yaml")
    deployment.spec.resources.gpus_per_replica = gpus
    config = build_serve_config(deployment.spec, None)
    engine = config.applications[1].deployments[0]
    assert engine.ray_actor_options == actor_options
    assert (list(engine.placement_group_bundles) if engine.placement_group_bundles else None) == bundles
    assert ModelAppArgs.model_validate(config.applications[1].args).engine.tensor_parallel_size == max(1, gpus)


def test_autoscaling_settings_reach_the_engine_deployment() -> None:
    deployment = _load(EXAMPLES / "mistral-7b-awq.yaml")
    autoscaling = build_serve_config(deployment.spec, None).applications[1].deployments[0]
    assert autoscaling.autoscaling_config is not None
    config = autoscaling.autoscaling_config
    assert (config.min_replicas, config.max_replicas) == (2, 6)
    assert config.target_ongoing_requests == 6
    assert (config.upscale_delay_s, config.downscale_delay_s) == (30, 600)
    assert config.policy.policy_function == "slm_serving.autoscaling:queue_depth_policy"


@pytest.mark.parametrize(
    ("min_r", "max_r", "surge", "weight", "stable", "canary"),
    [
        (1, 4, 1, 0, (1, 4), (1, 1)),
        (1, 4, 1, 10, (1, 4), (1, 1)),
        (1, 4, 1, 50, (1, 3), (1, 2)),
        (2, 4, 0, 50, (2, 2), (1, 2)),
        (1, 1, 1, 100, (1, 1), (1, 1)),
        (0, 3, 1, 20, (0, 3), (1, 1)),
        (4, 8, 2, 100, (2, 2), (4, 8)),
    ],
)
def test_replica_budget_never_exceeds_max_plus_surge(
    min_r: int, max_r: int, surge: int, weight: int, stable: tuple[int, int], canary: tuple[int, int]
) -> None:
    autoscaling = AutoscalingSpec(min_replicas=min_r, max_replicas=max_r, scale_to_zero=min_r == 0)
    got_stable, got_canary = split_replica_budget(autoscaling, surge, weight)
    assert (got_stable.min_replicas, got_stable.max_replicas) == stable
    assert (got_canary.min_replicas, got_canary.max_replicas) == canary
    assert got_stable.max_replicas + got_canary.max_replicas <= max(max_r + surge, 2)


def test_only_serve_config_changes_between_revisions_of_the_same_shape() -> None:
    """A canary of the same pod shape changes serveConfigV2 only: KubeRay updates in place, no new cluster."""
    before = build_rayservice(_load(EXAMPLES / "phi3-mini.yaml"))
    after = build_rayservice(_with_canary(_load(EXAMPLES / "phi3-mini.yaml"), 10, "hf://org/phi-next"))
    assert before["spec"]["rayClusterConfig"] == after["spec"]["rayClusterConfig"]
    assert before["spec"]["serveConfigV2"] != after["spec"]["serveConfigV2"]


def test_worker_groups_per_pod_settings_with_fixed_bounds() -> None:
    """KubeRay never applies a changed min/maxReplicas of a running group: they do not follow the spec
    (the replica budget is in each revision's Serve autoscaling bounds)."""
    deployment = _load(EXAMPLES / "phi3-mini.yaml")
    groups = build_rayservice(deployment)["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    (group,) = groups
    assert group["groupName"] == worker_group_name(worker_pod_settings(revision_template(deployment.spec)))
    assert (group["minReplicas"], group["maxReplicas"]) == (0, WORKER_GROUP_MAX_REPLICAS)
    pod = group["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "envFrom" not in container  # only the key an hf:// source needs, not the whole Secret
    assert container["env"] == [
        {"name": "RAY_SERVE_ENABLE_HA_PROXY", "value": "1"},  # the default front end, HAProxy
        {"name": "RAY_SERVE_THROUGHPUT_OPTIMIZED", "value": "1"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN", "optional": True}}},
    ]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_the_front_end_is_set_in_every_ray_container() -> None:
    """HAProxy (the default) needs its switches in every Ray process's environment: head and workers;
    Serve's own proxy needs none (the pod templates of clusters built before there was a choice)."""
    deployment = _load(EXAMPLES / "tiny.yaml")
    for front_end, wanted in (("HAProxy", FRONT_END_ENV[FrontEnd.HAPROXY]), ("ServeProxy", {})):
        chosen = deployment.model_copy(update={"spec": deployment.spec.model_copy(update={"front_end": front_end})})
        config = build_rayservice(chosen)["spec"]["rayClusterConfig"]
        pods = [config["headGroupSpec"]["template"]] + [g["template"] for g in config["workerGroupSpecs"]]
        for pod in pods:
            (container,) = pod["spec"]["containers"]
            assert {e["name"]: e.get("value") for e in container.get("env", [])} == wanted, (front_end, container)


def test_pvc_sources_are_mounted_read_only() -> None:
    pod = build_rayservice(_load(EXAMPLES / "qwen2.5-lora.yaml"))["spec"]["rayClusterConfig"]["workerGroupSpecs"][0][
        "template"
    ]["spec"]
    assert pod["volumes"] == [{"name": "model-0", "persistentVolumeClaim": {"claimName": "adapters", "readOnly": True}}]
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/mnt/models/adapters"


def test_builder_is_deterministic() -> None:
    assert build_rayservice(_load(EXAMPLES / "tiny.yaml")) == build_rayservice(_load(EXAMPLES / "tiny.yaml"))


def _engine_bounds(deployment: SLMDeployment) -> dict[str, tuple[int, int]]:
    config = build_serve_config(deployment.spec, deployment.status)
    bounds = {}
    for app in config.applications[1:]:
        autoscaling = app.deployments[0].autoscaling_config
        assert autoscaling is not None
        bounds[app.name.removeprefix("rev-")] = (autoscaling.min_replicas, autoscaling.max_replicas)
    return bounds


def test_canary_and_stable_share_the_budget_and_draining_revisions_shrink() -> None:
    deployment = _with_canary(_load(EXAMPLES / "phi3-mini.yaml"), 50, "hf://org/phi-next")
    assert deployment.status is not None
    stable, canary = deployment.status.stable_revision, deployment.status.canary_revision
    assert _engine_bounds(deployment) == {stable: (1, 3), canary: (1, 2)}  # 4 + 1 surge
    # After a rollback the canary drains at weight 0: it may not squeeze the stable any more.
    rolled_back = deployment.model_copy(
        update={"status": deployment.status.model_copy(update={"canary_revision": None})}
    )
    assert _engine_bounds(rolled_back) == {stable: (1, 4), canary: (0, 1)}


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_serve_config_is_valid_for_ray_serve(path: Path) -> None:
    """serveConfigV2 as KubeRay hands it to Serve parses with Ray Serve's own schema, and engines get time
    to finish running generations when they stop (scale-down, retired revision)."""
    from ray.serve.schema import ServeDeploySchema

    document = yaml.safe_load(build_rayservice(_load(path))["spec"]["serveConfigV2"])
    parsed = ServeDeploySchema.model_validate(document)
    engines = [d for app in parsed.applications for d in app.deployments if d.name == "LLMEngine"]
    assert engines and all(d.graceful_shutdown_timeout_s == ENGINE_GRACEFUL_SHUTDOWN_S for d in engines)


def _router_config(deployment: SLMDeployment, pin_digest: str | None = None) -> RouterUserConfig:
    config = build_serve_config(deployment.spec, deployment.status, pin_digest=pin_digest)
    (router_app,) = [a for a in config.applications if a.name == ROUTER_APP_NAME]
    user_config = router_app.deployments[0].user_config
    assert user_config is not None
    return RouterUserConfig.model_validate(user_config)


def test_router_holds_the_pin_digest_and_never_a_token() -> None:
    deployment = _load(EXAMPLES / "tiny.yaml")
    key = PinKey(b"k" * 32)
    digest = key.digest("default", "tiny", "0b6c-uid")
    serve_config = build_rayservice(deployment, pin_digest=digest)["spec"]["serveConfigV2"]
    assert _router_config(deployment, digest).pin_token_sha256 == digest
    assert digest in serve_config and key.token("default", "tiny", "0b6c-uid") not in serve_config
    assert _router_config(deployment).pin_token_sha256 is None  # no digest: nobody can pin
    assert "k" * 32 not in repr(key)


@pytest.mark.parametrize(
    ("example", "max_request_bytes"),
    [("tiny.yaml", 1024 * 1024), ("mistral-7b-awq.yaml", 1024 * 1024)],  # 16384 x 32 B is under the floor
)
def test_request_cap_is_sized_for_the_context(example: str, max_request_bytes: int) -> None:
    router = _router_config(_load(EXAMPLES / example))
    assert router.max_request_bytes == max_request_bytes
    assert not router.expose_revision


def test_router_limits_follow_the_spec() -> None:
    deployment = _load(EXAMPLES / "tiny.yaml")
    deployment.spec.router = RouterSpec(
        max_request_bytes=4096, request_timeout_seconds=30, idle_timeout_seconds=5, expose_revision=True
    )
    router = _router_config(deployment)
    assert (router.max_request_bytes, router.request_timeout_s, router.idle_timeout_s) == (4096, 30, 5)
    assert router.expose_revision


def test_request_cap_takes_the_longest_live_context() -> None:
    deployment = _with_canary(_load(EXAMPLES / "phi3-mini.yaml"), 10, "hf://microsoft/Phi-3-mini-128k-instruct")
    assert deployment.status is not None
    deployment.status.revisions[1].template.model.max_model_len = 131072
    assert _router_config(deployment).max_request_bytes == 131072 * 32
    deployment.status.revisions[1].template.model.max_model_len = None  # the model's own: unknown here
    assert _router_config(deployment).max_request_bytes == 32768 * 32
