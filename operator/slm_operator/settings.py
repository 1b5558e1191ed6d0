"""Operator settings: environment variables with the `SLM_` prefix, read once at start and passed down."""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from slm_operator.builder.network_policy import ControlPeers
from slm_operator.probes import VALIDATION_DEADLINE_S
from slm_operator.rollout.cost import DEFAULT_CPU_HOUR_PRICE, DEFAULT_GPU_HOUR_PRICES, Prices
from slm_operator.rollout.working import DEFAULT_MIN_STEP_REQUESTS
from slm_operator.routes import DEFAULT_ROUTES_SETTLE_SECONDS

LABELS_PATTERN = r"^[^=,\s]+=[^=,\s]*(,[^=,\s]+=[^=,\s]*)*$"
"""At least one `key=value`: an empty pod selector would admit every pod."""


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
    peering_lifetime_seconds: int = Field(
        default=60,
        ge=5,
        description="How long a replica's peering record lives without a refresh: a standby takes over "
        "at most this long (plus a few seconds) after the active replica dies.",
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

    webhook_port: int = Field(
        default=0, ge=0, le=65535, description="HTTPS port of the validating admission webhook; 0 disables it."
    )
    webhook_addr: str = Field(default="0.0.0.0", description="Address the webhook server listens on.")
    webhook_host: str = Field(
        default="", description="DNS name the API server uses for the webhook (`<service>.<namespace>.svc`)."
    )
    webhook_cert_dir: str = Field(
        default="", description="Directory with tls.crt and tls.key (cert-manager); empty: self-signed at start."
    )
    webhook_configuration: str = Field(
        default="",
        description="ValidatingWebhookConfiguration whose caBundle gets the self-signed certificate; empty: none.",
    )

    router_url_template: str = Field(
        default="http://{name}-serve-svc.{namespace}.svc:8000",
        description="Where the operator reaches an SLMDeployment's router (golden prompts, pinned).",
    )
    dashboard_url_template: str = Field(
        default="http://{name}-head-svc.{namespace}.svc:8265",
        description="Ray dashboard of an SLMDeployment's RayService: Serve's replica counts per revision; "
        "empty: estimate them from application states.",
    )
    dashboard_token: SecretStr | None = Field(
        default=None,
        description="One bearer token for every RayService's dashboard, for Ray clusters whose token the user "
        "manages; unset: each SLMDeployment's own token (derived from ray_token_key).",
    )
    ray_token_key: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_hex(32)),
        description="Key from which each SLMDeployment's Ray token is derived (HMAC); set it from a Secret. "
        "Unset: a random key per process, so tokens written by an earlier operator process no longer match.",
    )
    operator_namespace: str = Field(
        default="", description="Namespace of the operator's pods (NetworkPolicies admit them); empty: any."
    )
    operator_pod_labels: str = Field(
        pattern=LABELS_PATTERN,
        default="app.kubernetes.io/name=slm-operator",
        description="Comma-separated key=value labels of the operator's pods, for the RayServices' NetworkPolicies.",
    )
    kuberay_namespace: str = Field(
        default="", description="Namespace of the KubeRay operator (admitted to the Ray dashboards); empty: any."
    )
    kuberay_pod_labels: str = Field(
        pattern=LABELS_PATTERN,
        default="app.kubernetes.io/name=kuberay-operator",
        description="Comma-separated key=value labels of the KubeRay operator's pods.",
    )
    pin_key: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_hex(32)),
        min_length=16,
        description="Key the per-deployment canary pin tokens are derived from (the router honours "
        "`x-slm-revision` only with one); set it from a Secret so restarts and replicas agree. "
        "Unset: a random key per process.",
    )
    replicas_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often an autoscaled SLMDeployment's replica counts are refreshed."
    )
    rollout_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often a rollout in progress is re-evaluated (a kopf timer)."
    )
    routes_settle_seconds: float = Field(
        default=DEFAULT_ROUTES_SETTLE_SECONDS,
        ge=0,
        description="How long after a serveConfigV2 change the router counts as updated.",
    )
    min_step_requests: int = Field(
        default=DEFAULT_MIN_STEP_REQUESTS,
        ge=0,
        description="Canary requests a traffic step needs before its live metrics are judged.",
    )

    validation_deadline_seconds: float = Field(
        default=VALIDATION_DEADLINE_S,
        gt=0,
        description="Longest one golden-prompt validation may take, all prompts on canary and stable together; "
        "prompts it leaves no time for count as errors.",
    )
    gpu_hour_prices: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_GPU_HOUR_PRICES),
        description="Price of one GPU-hour per acceleratorType, JSON; '*' for any other "
        "(a SLMDeployment's spec.cost overrides it).",
    )
    cpu_hour_price: float = Field(
        default=DEFAULT_CPU_HOUR_PRICE, ge=0, description="Price of one CPU-core-hour, for CPU-only revisions."
    )
    failure_backoff_seconds: float = Field(
        default=5.0, gt=0, description="Delay before the first retry of a RayService write that failed (422, not ours)."
    )
    failure_backoff_max_seconds: float = Field(
        default=300.0, gt=0, description="Longest delay between retries of a failing RayService write (doubling)."
    )

    @property
    def prices(self) -> Prices:
        return Prices(gpu_hour=dict(self.gpu_hour_prices), cpu_hour=self.cpu_hour_price)

    @property
    def control_peers(self) -> ControlPeers:
        """Who, besides its own pods, may reach a RayService's dashboard (the two operators)."""
        return ControlPeers(
            operator_namespace=self.operator_namespace,
            operator_pod_labels=_labels(self.operator_pod_labels),
            kuberay_namespace=self.kuberay_namespace,
            kuberay_pod_labels=_labels(self.kuberay_pod_labels),
        )

    @property
    def namespace_list(self) -> list[str]:
        return [ns.strip() for ns in self.namespaces.split(",") if ns.strip()]

    @property
    def clusterwide(self) -> bool:
        return not self.namespace_list


def _labels(text: str) -> dict[str, str]:
    """`a=b,c=d` → {"a": "b", "c": "d"}."""
    pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
    return {key.strip(): value.strip() for key, value in pairs}
