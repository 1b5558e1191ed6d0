"""Operator settings: environment variables with the `SLM_` prefix, read once at start and passed down."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from slm_operator.rollout.working import DEFAULT_MIN_STEP_REQUESTS


class OperatorSettings(BaseSettings):
    """What the Helm chart sets (`SLM_NAMESPACES`, `SLM_PEERING_NAME`, …); defaults suit a cluster."""

    model_config = SettingsConfigDict(env_prefix="SLM_", extra="ignore")

    namespaces: str = Field(
        default="", description="Comma-separated namespaces to watch; empty watches the whole cluster."
    )
    peering_name: str = Field(
        default="slm-operator",
        description="kopf peering object that keeps one active replica (HA); empty runs standalone.",
    )
    peering_priority: int = Field(
        default=0, ge=0, le=32767, description="kopf peering priority; 0 picks a random one per process."
    )
    metrics_port: int = Field(default=8080, ge=0, le=65535, description="Prometheus `/metrics` port; 0 disables.")
    health_port: int = Field(default=8081, ge=0, le=65535, description="Liveness `/healthz` port; 0 disables.")
    log_format: Literal["json", "text"] = Field(default="json", description="Log line format.")
    kube_server: str | None = Field(
        default=None, description="API server URL override (tests); unset uses in-cluster or kubeconfig."
    )
    field_manager: str = Field(default="slm-operator", description="Field manager name of the operator's writes.")
    request_timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one API request.")
    conflict_retries: int = Field(
        default=3, ge=0, description="Immediate re-read-and-retry rounds on a 409 before backing off."
    )

    router_url_template: str = Field(
        default="http://{name}-serve-svc.{namespace}.svc:8000",
        description="Where the operator reaches an SLMDeployment's router (golden prompts, pinned).",
    )
    metrics_url_template: str = Field(
        default="http://{pod_ip}:8080/metrics",
        description="Comma-separated Prometheus endpoints with the router's metrics (Ray's metrics agents); "
        "an entry with {pod_ip} stands for every Running pod of the SLMDeployment's RayService.",
    )
    dashboard_url_template: str = Field(
        default="http://{name}-head-svc.{namespace}.svc:8265",
        description="Ray dashboard of an SLMDeployment's RayService: Serve's replica counts per revision; "
        "empty: estimate them from application states.",
    )
    dashboard_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for the Ray dashboard where Ray's token authentication is on "
        "(RAY_AUTH_MODE=token); set it from a Secret.",
    )
    pin_key: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="Key the per-deployment canary pin tokens are derived from (the router honours "
        "`x-slm-revision` only with one); set it from a Secret so restarts and replicas agree.",
    )
    replicas_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often an autoscaled SLMDeployment's replica counts are refreshed."
    )
    rollout_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often a rollout in progress is re-evaluated (a kopf timer)."
    )
    routes_settle_seconds: float = Field(
        default=10.0, ge=0, description="How long after a serveConfigV2 change the router counts as updated."
    )
    min_step_requests: int = Field(
        default=DEFAULT_MIN_STEP_REQUESTS,
        ge=0,
        description="Canary requests a traffic step needs before its live metrics are judged.",
    )

    @property
    def namespace_list(self) -> list[str]:
        return [ns.strip() for ns in self.namespaces.split(",") if ns.strip()]

    @property
    def clusterwide(self) -> bool:
        return not self.namespace_list
