"""SLMDeployment spec + live revisions → Ray Serve's declarative config (`serveConfigV2`). Pure.

One application per live revision, plus the router application, which always has the route `/`.
Every engine deployment and the router deployment get the routes as `user_config` (applied in place,
no restart). Outside rollouts the stable revision's application also takes `/v1` (`direct_revision`):
Serve prefers the longest matching prefix, so the OpenAI API then goes straight to the stable's
replicas, which serve their own revision in-process. While a canary is live no revision has `/v1`
and every request goes through the router application, so the canary and the stable are both one
handle call away and the rollout gate compares them on equal terms. Withdrawing or adding `/v1`
never leaves a request without a route: `/` catches whatever `/v1` does not.

Used by the operator (inside the RayService) and by `slm serve` (applied to a local Ray), so both
run exactly the same applications.
"""

from __future__ import annotations

from collections.abc import Sequence

from slm_operator.api.models import (
    AdapterRolloutStatus,
    RevisionStatus,
    RevisionTemplate,
    SLMDeploymentSpec,
    SLMDeploymentStatus,
)
from slm_operator.builder.revisions import ReplicaBounds, live_revisions, revision_bounds, serving_revision
from slm_operator.constants import SERVE_PORT
from slm_operator.rollout.adapters import DEFAULT_ADAPTER_RANK, adapter_version, engine_capacity
from slm_serving.config import (
    API_ROUTE_PREFIX,
    ENGINE_DEPLOYMENT_NAME,
    MODEL_IMPORT_PATH,
    ROUTER_APP_NAME,
    ROUTER_DEPLOYMENT_NAME,
    ROUTER_IMPORT_PATH,
    ROUTER_ROUTE_PREFIX,
    AdapterRoute,
    AdapterVersionRoute,
    AnswerRules,
    EngineConfig,
    HTTPOptions,
    ModelAppArgs,
    RevisionRoute,
    RouterUserConfig,
    ServeApplicationConfig,
    ServeAutoscalingConfig,
    ServeConfigV2,
    ServeDeploymentConfig,
    ShadowConfig,
    default_max_request_bytes,
    revision_app_name,
)

ENGINE_GRACEFUL_SHUTDOWN_S = 300.0
"""A replica that is scaled down or whose revision is retired finishes the generations it runs first
(Serve's default, 20 s, would cut long answers off). Matches the router's request-holding bound."""


def build_engine_config(template: RevisionTemplate) -> EngineConfig:
    """The revision's vLLM engine; its LoRA capacity derived from the adapters (`engine_capacity`)."""
    model = template.model
    capacity = engine_capacity(template.adapters)
    return EngineConfig(
        source=model.source,
        revision=model.revision,
        served_model_name=model.served_model_name,
        dtype=model.dtype,
        quantization=model.quantization.value if model.quantization else None,
        max_model_len=model.max_model_len,
        tensor_parallel_size=max(1, template.gpus_per_replica),
        engine_args=dict(model.engine_args),
        max_loras=capacity.max_loras if capacity else 0,
        max_lora_rank=capacity.max_lora_rank if capacity else DEFAULT_ADAPTER_RANK,
    )


def build_engine_deployment(
    spec: SLMDeploymentSpec, template: RevisionTemplate, bounds: ReplicaBounds
) -> ServeDeploymentConfig:
    """The vLLM deployment of one revision: GPUs per replica and the queue-depth autoscaler."""
    autoscaling = spec.autoscaling
    gpus = template.gpus_per_replica
    actor_options: dict[str, float] = {"num_cpus": 1}
    bundles: tuple[dict[str, float], ...] | None = None
    if gpus == 1:
        actor_options["num_gpus"] = 1
    elif gpus > 1:
        # Tensor parallelism: one bundle per GPU worker, packed on one node.
        bundles = tuple({"GPU": 1.0, "CPU": 1.0} for _ in range(gpus))
    return ServeDeploymentConfig(
        name=ENGINE_DEPLOYMENT_NAME,
        max_ongoing_requests=max(64, int(autoscaling.target_queue_depth * 16)),
        graceful_shutdown_timeout_s=ENGINE_GRACEFUL_SHUTDOWN_S,
        autoscaling_config=ServeAutoscalingConfig(
            min_replicas=bounds.min_replicas,
            max_replicas=bounds.max_replicas,
            initial_replicas=max(bounds.min_replicas, 1) if autoscaling.scale_to_zero else None,
            target_ongoing_requests=autoscaling.target_queue_depth,
            upscale_delay_s=autoscaling.upscale_delay_seconds,
            downscale_delay_s=autoscaling.downscale_delay_seconds,
        ),
        ray_actor_options=None if bundles else dict(actor_options),
        placement_group_bundles=bundles,
        placement_group_strategy="STRICT_PACK" if bundles else None,
    )


def build_router_config(
    spec: SLMDeploymentSpec,
    revisions: Sequence[RevisionStatus],
    pin_digest: str | None = None,
    shadow: ShadowConfig | None = None,
    adapter_revision: str | None = None,
    adapter_rollouts: Sequence[AdapterRolloutStatus] = (),
) -> RouterUserConfig:
    """The routes, accepted model names (base model and every live revision's adapters), the limits of
    `spec.router` (the body cap sized for the longest live context), the operator's pin digest and the
    revision being shadowed, if any."""
    router = spec.router
    return RouterUserConfig(
        served_model_name=spec.model.served_model_name,
        adapters=build_adapter_routes(revisions, adapter_revision, adapter_rollouts),
        adapter_revision=adapter_revision,
        routes=tuple(
            RevisionRoute(revision=r.name, app_name=revision_app_name(r.name), weight=r.weight) for r in revisions
        ),
        pin_token_sha256=pin_digest,
        expose_revision=router.expose_revision,
        max_request_bytes=router.max_request_bytes or default_max_request_bytes(_longest_context(revisions)),
        request_timeout_s=router.request_timeout_seconds,
        idle_timeout_s=router.idle_timeout_seconds,
        shadow=shadow,
    )


def build_adapter_routes(
    revisions: Sequence[RevisionStatus], adapter_revision: str | None, rollouts: Sequence[AdapterRolloutStatus]
) -> tuple[AdapterRoute, ...]:
    """Every adapter of the live revisions (the adapter revision's source where two differ), each with
    the versions every engine holds: from its rollout in `status.adapters` where there is one (stable
    and canary with their weights; a canary still loading or validating at 0; none at all after a first
    version failed), else the template's source at 100."""
    templates = sorted(revisions, key=lambda r: r.name == adapter_revision)  # the adapter revision's last: it wins
    adapters = {a.name: a for r in templates for a in r.template.adapters}
    rollouts_by_name = {s.name: s for s in rollouts}
    routes = []
    for name in sorted(adapters):
        rollout = rollouts_by_name.get(name)
        versions: tuple[AdapterVersionRoute, ...]
        if rollout is None:
            source = adapters[name].source
            versions = (AdapterVersionRoute(version=adapter_version(source), source=source, weight=100),)
        else:
            versions = tuple(
                AdapterVersionRoute(version=v.version, source=v.source, weight=v.weight)
                for v in (rollout.stable, rollout.canary)
                if v is not None
            )
        routes.append(AdapterRoute(name=name, versions=versions))
    return tuple(routes)


def build_shadow_config(spec: SLMDeploymentSpec, status: SLMDeploymentStatus | None) -> ShadowConfig | None:
    """The router's shadow copies while the rollout is in its shadow phase (`status.rollout.shadowStartedAt`,
    which is also the phase's epoch): to the canary, with `spec.rollout.shadow`'s bounds and comparison;
    `expectations` applies every golden prompt's expect rules. None outside the phase."""
    shadow = spec.rollout.shadow
    rollout = status.rollout if status is not None else None
    canary = status.canary_revision if status is not None else None
    if shadow is None or rollout is None or rollout.shadow_started_at is None or canary is None:
        return None
    rules = tuple(
        AnswerRules(
            contains=tuple(p.expect.contains),
            not_contains=tuple(p.expect.not_contains),
            regex=p.expect.regex,
            json_schema=p.expect.json_schema,
        )
        for p in spec.rollout.validation.prompts
    )
    return ShadowConfig(
        revision=canary,
        app_name=revision_app_name(canary),
        epoch=rollout.shadow_started_at,
        fraction=shadow.fraction,
        comparison=shadow.comparison,
        rules=rules if shadow.comparison == "expectations" else (),
        max_rps=shadow.max_shadow_rps,
        max_in_flight=shadow.max_in_flight,
        timeout_s=float(spec.router.request_timeout_seconds),
    )


def _longest_context(revisions: Sequence[RevisionStatus]) -> int | None:
    """The longest `maxModelLen` of the live revisions; None where one leaves it to the model."""
    contexts = [r.template.model.max_model_len for r in revisions]
    if not contexts or None in contexts:
        return None
    return max(c for c in contexts if c is not None)


def direct_revision(spec: SLMDeploymentSpec, status: SLMDeploymentStatus | None) -> str | None:
    """The revision whose application takes `/v1` directly: the stable one (the first live one before
    there is a stable). None (all through the router application) while a canary is live, and for a
    deployment that may scale to zero: at zero the router holds requests within its cold-start bounds
    (timeout, most held) and answers `/v1/models` itself, where Serve's proxy would hold them unbounded."""
    if spec.autoscaling.min_replicas == 0 or (status is not None and status.canary_revision is not None):
        return None
    return serving_revision(live_revisions(spec, status), status)


def build_router_application(router: RouterUserConfig) -> ServeApplicationConfig:
    return ServeApplicationConfig(
        name=ROUTER_APP_NAME,
        route_prefix=ROUTER_ROUTE_PREFIX,
        import_path=ROUTER_IMPORT_PATH,
        deployments=(
            ServeDeploymentConfig(
                name=ROUTER_DEPLOYMENT_NAME, num_replicas=1, user_config=router.model_dump(mode="json")
            ),
        ),
    )


def build_revision_application(
    spec: SLMDeploymentSpec, revision: RevisionStatus, bounds: ReplicaBounds, router: RouterUserConfig, *, direct: bool
) -> ServeApplicationConfig:
    """One revision's application; `direct`: it takes `/v1` itself (see the module docstring)."""
    args = ModelAppArgs(revision=revision.name, engine=build_engine_config(revision.template))
    deployment = build_engine_deployment(spec, revision.template, bounds)
    return ServeApplicationConfig(
        name=revision_app_name(revision.name),
        route_prefix=API_ROUTE_PREFIX if direct else None,
        import_path=MODEL_IMPORT_PATH,
        args=args.model_dump(mode="json"),
        deployments=(deployment.model_copy(update={"user_config": router.model_dump(mode="json")}),),
    )


def build_serve_config(
    spec: SLMDeploymentSpec,
    status: SLMDeploymentStatus | None,
    *,
    port: int = SERVE_PORT,
    pin_digest: str | None = None,
) -> ServeConfigV2:
    """The router application plus one application per live revision (from `status`, else the spec's);
    `pin_digest`: SHA-256 of the operator's pin token (`slm_serving.pins`), None: no pins honoured."""
    revisions = live_revisions(spec, status)
    bounds = revision_bounds(spec, status)
    direct = direct_revision(spec, status)
    router = build_router_config(
        spec,
        revisions,
        pin_digest,
        build_shadow_config(spec, status),
        serving_revision(revisions, status),
        status.adapters if status is not None else (),
    )
    return ServeConfigV2(
        http_options=HTTPOptions(port=port),
        applications=(
            build_router_application(router),
            *(build_revision_application(spec, r, bounds[r.name], router, direct=r.name == direct) for r in revisions),
        ),
    )
