"""The typed SLMDeployment API (spec and status): the single source of truth for the CRD.

`slm_operator.api.crd` generates the CRD's openAPIV3Schema from these models; cross-field rules are
CEL `x-kubernetes-validations` attached with `cel_rules`, evaluated by the API server and by
`slm validate` alike.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator
from pydantic.alias_generators import to_camel

from slm_serving.config import FrontEnd

GROUP = "slm.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SLMDeployment"
PLURAL = "slmdeployments"
SINGULAR = "slmdeployment"
SHORT_NAMES = ("slmd",)

DEFAULT_RAY_VERSION = "2.60.0"
DEFAULT_RAY_IMAGE = "ghcr.io/slm-dev/slm-serving:0.1.0"
MODEL_SOURCE_PATTERN = r"^((hf|s3|gs|pvc|file|tiny)://.+|/.+|\./.+)$"
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""Kubernetes' resource.Quantity grammar, the pattern its own OpenAPI schema publishes for quantities."""


Ratio = Annotated[float, Field(ge=1, le=100)]
"""How many times the stable's figure a canary may reach (latency, TTFT, cost): 1 to 100."""
Share = Annotated[float, Field(ge=0, le=1)]
"""A share, 0 to 1: an error rate, a pass rate, an agreement."""


def cel_rules(*rules: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules: (rule, message[, fieldPath])."""
    validations = []
    for rule in rules:
        entry = {"rule": rule[0], "message": rule[1]}
        if len(rule) == 3:
            entry["fieldPath"] = rule[2]
        validations.append(entry)
    return {"x-kubernetes-validations": validations}


def _defaulted_elsewhere(schema: dict[str, Any]) -> None:
    """A field whose default depends on other fields (filled in by the model): no `default` in the CRD."""
    schema.pop("default", None)


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", use_enum_values=False)


# ---------------------------------------------------------------- spec.model / spec.adapters


class SecretKeyRef(ApiModel):
    name: str = Field(description="Name of a Secret in the SLMDeployment's namespace.", min_length=1, max_length=253)


class Quantization(StrEnum):
    AWQ = "awq"
    GPTQ = "gptq"
    FP8 = "fp8"
    BITSANDBYTES = "bitsandbytes"
    GGUF = "gguf"
    COMPRESSED_TENSORS = "compressed-tensors"


class ModelSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "self.source.matches('" + MODEL_SOURCE_PATTERN.replace("\\", "\\\\") + "')",
                "source must be hf://org/name, s3://bucket/path, gs://bucket/path, pvc://claim/path, "
                "file://path, tiny://good|bad, or a local path starting with / or ./",
                ".source",
            ),
            (
                "!self.source.startsWith('pvc://') || self.source.matches('^pvc://[a-z0-9][-a-z0-9.]*(/.*)?$')",
                "a pvc:// source must name a PersistentVolumeClaim: pvc://claim/path",
                ".source",
            ),
        )
    )

    source: str = Field(
        min_length=1,
        max_length=512,
        description="Where the weights are: hf://org/name (Hugging Face), s3://bucket/path, gs://bucket/path, "
        "pvc://claim/path (a PersistentVolumeClaim), file://path or a local path (for `slm serve`), "
        "or tiny://good / tiny://bad (the project's built-in test models).",
    )
    revision: str | None = Field(
        default=None, max_length=128, description="Revision of the source: a branch, tag or commit hash."
    )
    served_model_name: str = Field(
        default="",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        description="Name clients pass as `model` in OpenAI requests. Defaults to metadata.name.",
        json_schema_extra=_defaulted_elsewhere,
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="auto", description="Weight and activation dtype for vLLM."
    )
    quantization: Quantization | None = Field(
        default=None, description="Quantization method of the weights (vLLM's `quantization`)."
    )
    max_model_len: int | None = Field(
        default=None, ge=16, le=1_048_576, description="Maximum context length in tokens."
    )
    engine_args: dict[str, JsonValue] = Field(
        default_factory=dict,
        max_length=64,
        description="Further vLLM engine arguments (snake_case names, e.g. gpu_memory_utilization), "
        "passed through unchanged. Not those the operator sets (model, served_model_name, dtype, "
        "quantization, max_model_len, tensor_parallel_size, revision, LoRA settings) and no credentials; "
        "trust_remote_code needs trustRemoteCode: true.",
    )
    trust_remote_code: bool = Field(
        default=False,
        description="Opt in to running Python code shipped with the model (vLLM's trust_remote_code); "
        "required before engineArgs may set trust_remote_code.",
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret whose keys become environment variables of the serving pods "
        "(e.g. HF_TOKEN, AWS_ACCESS_KEY_ID): credentials are never put in the spec.",
    )


class AdapterSpec(ApiModel):
    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Name clients pass as `model` to use this LoRA adapter.",
    )
    source: str = Field(
        min_length=1,
        max_length=512,
        pattern=MODEL_SOURCE_PATTERN,
        description="Where the adapter's weights are (same schemes as spec.model.source).",
    )
    rank: int | None = Field(
        default=None,
        ge=1,
        le=512,
        description="The adapter's LoRA rank (`r` in its adapter_config.json). The engines are started with "
        "max_lora_rank the smallest rank vLLM supports that fits the largest adapter, and max_loras twice the "
        "number of adapters (old and new version of each during its rollout). Unset: 16, vLLM's default.",
    )


# ---------------------------------------------------------------- spec.resources


class Toleration(ApiModel):
    key: str | None = Field(
        default=None,
        max_length=317,
        description="Taint key the toleration applies to (a label key). Required: an empty key with "
        "Exists would tolerate every taint.",
    )
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value to match (with Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(default=None, description="How long a NoExecute taint is tolerated.")


Quantity = Annotated[
    Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=64)] | Annotated[int, Field(ge=0)],
    Field(description="A Kubernetes quantity, e.g. 4, 500m, 16Gi."),
]


class ResourcesSpec(ApiModel):
    gpus_per_replica: int = Field(
        default=1, ge=0, le=16, description="GPUs per model replica (vLLM tensor parallelism). 0 runs on CPU."
    )
    accelerator_type: str | None = Field(
        default=None,
        max_length=63,
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        description="GPU model to schedule on: the value of the nvidia.com/gpu.product node label set by NVIDIA "
        "GPU Feature Discovery, e.g. NVIDIA-L4 or NVIDIA-A100-SXM4-80GB.",
    )
    cpu: Quantity = Field(default="4", description="CPU request and limit of each GPU worker pod.")
    memory: Quantity = Field(default="16Gi", description="Memory request and limit of each GPU worker pod.")
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, max_length=32, description="Node labels the GPU worker pods must match."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Tolerations of the GPU worker pods."
    )


# ---------------------------------------------------------------- spec.autoscaling


class AutoscalingSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas", ".minReplicas"),
            (
                "self.minReplicas >= 1 || self.scaleToZero",
                "minReplicas 0 needs scaleToZero: true",
                ".minReplicas",
            ),
        )
    )

    min_replicas: int = Field(default=1, ge=0, le=1000, description="Fewest model replicas per revision.")
    max_replicas: int = Field(
        default=1, ge=1, le=1000, description="Most model replicas of the stable revision: the GPU budget."
    )
    target_queue_depth: float = Field(
        default=4.0,
        gt=0,
        le=1000,
        description="Requests waiting in vLLM per replica to aim for: more scales up, fewer scales down.",
    )
    upscale_delay_seconds: int = Field(
        default=10, ge=0, le=3600, description="How long the queue must stay above target before scaling up."
    )
    downscale_delay_seconds: int = Field(
        default=120, ge=0, le=86400, description="How long the queue must stay below target before scaling down."
    )
    scale_to_zero: bool = Field(
        default=False,
        description="Allow minReplicas 0: the router holds requests while the first replica starts "
        "(up to 300 s and 1000 requests, then 503).",
    )


# ---------------------------------------------------------------- spec.rollout


class TrafficStep(ApiModel):
    weight: int = Field(ge=1, le=100, description="Percent of traffic the canary gets at this step.")
    pause_seconds: int = Field(
        default=60, ge=0, le=86400, description="How long to hold this step while comparing live metrics."
    )
    max_wait_seconds: int = Field(
        default=600,
        ge=0,
        le=86400,
        description="After pauseSeconds, the longest the step may wait for a conclusive live comparison (enough "
        "canary and stable requests); then the step fails: rolled back, or held with autoRollback false.",
    )


class ChatMessage(ApiModel):
    role: Literal["system", "user", "assistant"] = Field(description="Author of the message.")
    content: str = Field(max_length=16384, description="Text of the message.")


class Expectation(ApiModel):
    contains: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=32, description="Substrings the answer must contain (all of them)."
    )
    not_contains: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=32, description="Substrings the answer must not contain."
    )
    regex: str | None = Field(
        default=None,
        max_length=1024,
        description="RE2 regular expression the answer must match (search; linear time, so no "
        "backreferences or lookaround).",
    )
    json_schema: dict[str, JsonValue] | None = Field(
        default=None, description="The answer must be valid JSON matching this JSON Schema."
    )


class GoldenPrompt(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("has(self.prompt) != has(self.messages)", "set exactly one of prompt or messages"),
        )
    )

    name: str = Field(
        min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Name in results."
    )
    prompt: str | None = Field(default=None, max_length=16384, description="A completion prompt.")
    messages: list[ChatMessage] | None = Field(
        default=None, min_length=1, max_length=32, description="A chat conversation (instead of prompt)."
    )
    max_tokens: int = Field(default=32, ge=1, le=4096, description="Tokens to generate (temperature 0).")
    expect: Expectation = Field(default_factory=Expectation, description="What a correct answer looks like.")
    adapter: str | None = Field(
        default=None,
        max_length=128,
        description="The LoRA adapter this prompt tests (sent with `model` set to it, in revision and adapter "
        "rollouts alike). An adapter's rollout is validated with the prompts naming it, else with those naming none.",
    )


class ValidationSpec(ApiModel):
    prompts: list[GoldenPrompt] = Field(
        default_factory=list,
        max_length=256,
        description="Golden prompts sent to the canary (pinned, before any user traffic) and the stable revision.",
    )
    min_pass_rate: Share = Field(default=1.0, description="Share of golden prompts the canary must pass (0 to 1).")
    max_latency_ratio: Ratio = Field(
        default=1.5,
        description="Golden prompts: the median of the per-prompt canary / stable latency ratios may be at most this; "
        "traffic steps: the canary's latencies against the stable's times this (docs/rollout.md).",
    )
    max_ttft_ratio: Ratio = Field(default=1.5, description="As maxLatencyRatio, for the time to first token.")
    max_error_rate: Share = Field(default=0.01, description="Most errors per request the canary may have (0 to 1).")
    max_cost_ratio: Ratio | None = Field(
        default=None,
        description="At each traffic step, the canary's cost per output token may be at most this multiple of "
        "the stable's, both scaled to an equal share of the traffic (docs/rollout.md). Unset: costs are "
        "reported, not gated.",
    )
    quality_check_interval_seconds: int = Field(
        default=0,
        ge=0,
        le=86400,
        description="Re-run the golden prompts on the stable revision this often (0: never).",
    )


class ShadowSpec(ApiModel):
    """The shadow phase: after the golden prompts pass and before any user traffic, a share of live user
    requests is copied to the canary and its answers compared with the ones users got (docs/rollout.md)."""

    fraction: float = Field(
        default=0.2, gt=0, le=1, description="Share of live user requests copied to the canary (0 < f <= 1)."
    )
    min_pairs: int = Field(
        default=50, ge=1, le=100000, description="Compared pairs (both answered) before the phase can pass."
    )
    comparison: Literal["exact", "normalized", "expectations"] = Field(
        default="normalized",
        description="When two answers agree: exact (the same text), normalized (the same after case folding, "
        "punctuation and whitespace are ignored) or expectations (both pass or fail each golden prompt's "
        "expect rules alike).",
    )
    min_agreement: Share = Field(default=0.9, description="Share of pairs that must agree (0 to 1).")
    max_latency_ratio: Ratio = Field(
        default=2.0,
        description="The median of the pairs' latency ratios (canary / stable, same request, same time) may be "
        "at most this.",
    )
    max_error_rate: Share = Field(default=0.02, description="Most failed copies per copy the canary may have (0 to 1).")
    max_shadow_rps: float = Field(
        default=5.0, gt=0, le=10000, description="Most copies started per second; more sampled requests are skipped."
    )
    max_in_flight: int = Field(
        default=4, ge=1, le=1000, description="Most copies unanswered at once; more sampled requests are skipped."
    )
    timeout_seconds: int = Field(
        default=900, ge=10, le=86400, description="Longest the phase may take to reach minPairs."
    )
    on_timeout: Literal["Fail", "Proceed"] = Field(
        default="Fail",
        description="Too few pairs by timeoutSeconds: Fail (roll back, or hold with autoRollback false) or "
        "Proceed to the traffic steps on what was seen (a failed check still fails).",
    )


class RolloutSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "!has(self.shadow) || self.shadow.comparison != 'expectations' || size(self.validation.prompts) > 0",
                "comparison expectations applies the golden prompts' expect rules: add prompts to "
                "spec.rollout.validation",
                ".shadow.comparison",
            ),
            (
                "self.steps.map(s, s.weight).isSorted() && "
                "self.steps.all(a, self.steps.exists_one(b, b.weight == a.weight))",
                "traffic step weights must increase strictly",
                ".steps",
            ),
            (
                "size(self.steps) == 0 || self.steps[size(self.steps) - 1].weight == 100",
                "the last traffic step must have weight 100",
                ".steps",
            ),
        )
    )

    steps: list[TrafficStep] = Field(
        default_factory=lambda: [
            TrafficStep(weight=10, pause_seconds=60),
            TrafficStep(weight=50, pause_seconds=60),
            TrafficStep(weight=100, pause_seconds=0),
        ],
        max_length=20,
        description="Canary traffic steps, in increasing weight, ending at 100. Empty: promote right after validation.",
    )
    max_surge_replicas: int = Field(
        default=1, ge=0, le=100, description="Extra replicas the canary may use beyond autoscaling.maxReplicas."
    )
    auto_rollback: bool = Field(
        default=True, description="Roll back automatically when validation or a traffic step fails."
    )
    validation: ValidationSpec = Field(
        default_factory=ValidationSpec, description="The quality gate and SLO limits a canary must meet."
    )
    shadow: ShadowSpec | None = Field(
        default=None,
        description="A shadow phase between validation and the first traffic step: live requests copied to the "
        "canary, answers compared, never returned. Unset: no shadow phase.",
    )


# ---------------------------------------------------------------- spec.cost


class CostSpec(ApiModel):
    gpu_hour_price: float | None = Field(
        default=None,
        ge=0,
        le=10000,
        description="Price of one GPU-hour of this deployment's revisions. Unset: the operator's price for the "
        "revision's acceleratorType (chart value cost.gpuHourPrices).",
    )
    cpu_hour_price: float | None = Field(
        default=None,
        ge=0,
        le=10000,
        description="Price of one CPU-core-hour, for revisions with gpusPerReplica 0. Unset: the operator's "
        "(chart value cost.cpuHourPrice).",
    )


# ---------------------------------------------------------------- spec.clusterUpgrade


class ClusterUpgradeSpec(ApiModel):
    approval: Literal["Manual", "Automatic"] = Field(
        default="Manual",
        description="Manual: a cluster upgrade (a second Ray cluster, all GPUs twice while both run) waits "
        "for the annotation slm.dev/approve-cluster-upgrade=<status.cluster.pendingUpgrade.id>. "
        "Automatic: it starts once no canary is live.",
    )


# ---------------------------------------------------------------- spec.router


class RouterSpec(ApiModel):
    """Limits of the OpenAI router in front of the model; changes apply in place, without a restart."""

    max_request_bytes: int | None = Field(
        default=None,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest request body in bytes (413 beyond it). Unset: 32 bytes per token of the "
        "context (maxModelLen, 32768 where that is unset), at least 1 MiB.",
    )
    request_timeout_seconds: int = Field(
        default=600,
        ge=1,
        le=86400,
        description="Deadline of a whole request, from its first byte to its last token: 408 while the "
        "body still arrives, 504 after; a stream under way ends with an error event.",
    )
    idle_timeout_seconds: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="Longest silence of a client sending its body (408) or of a stream between two chunks "
        "(the stream ends with an error event).",
    )
    expose_revision: bool = Field(
        default=False,
        description="Name the revision that served on every answer (`x-slm-revision` header); off, only "
        "the operator's own requests learn it.",
    )


# ---------------------------------------------------------------- spec.network


class LabelSelector(ApiModel):
    match_labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, max_length=16, description="Labels the selected objects all carry; empty selects all."
    )


class NetworkPeer(ApiModel):
    """A NetworkPolicy peer: pods (podSelector), namespaces (namespaceSelector) or pods in namespaces (both)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("has(self.podSelector) || has(self.namespaceSelector)", "name podSelector, namespaceSelector or both"),
        )
    )

    pod_selector: LabelSelector | None = Field(
        default=None, description="Pods (in the SLMDeployment's namespace unless namespaceSelector is set)."
    )
    namespace_selector: LabelSelector | None = Field(
        default=None, description="Namespaces whose pods (all, or those podSelector picks) may connect."
    )


class NetworkSpec(ApiModel):
    serving_from: list[NetworkPeer] | None = Field(
        default=None,
        max_length=16,
        description="Who may reach the OpenAI port (8000). Unset: every pod of the SLMDeployment's namespace. "
        "To admit an ingress controller, list its namespace, e.g. "
        "{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}, "
        "plus {podSelector: {}} to keep the namespace's own pods.",
    )
    metrics_from: list[NetworkPeer] | None = Field(
        default=None,
        max_length=16,
        description="Who may scrape Ray's metrics port (8080), e.g. Prometheus's namespace. "
        "Unset: every pod of the SLMDeployment's namespace.",
    )


class SLMDeploymentSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "self.autoscaling.maxReplicas + self.rollout.maxSurgeReplicas >= 2",
                "a canary needs room beside the stable revision: autoscaling.maxReplicas + "
                "rollout.maxSurgeReplicas must be at least 2",
                ".rollout.maxSurgeReplicas",
            ),
        )
    )

    model: ModelSpec = Field(description="The base model to serve.")
    adapters: list[AdapterSpec] = Field(
        default_factory=list,
        max_length=64,
        description="LoRA adapters served on the same base model.",
        json_schema_extra=cel_rules(
            ("self.all(a, self.exists_one(b, b.name == a.name))", "adapter names must be unique"),
        ),
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="What one model replica needs and where it may run."
    )
    ray_version: str = Field(
        default=DEFAULT_RAY_VERSION,
        max_length=32,
        pattern=r"^\d+\.\d+\.\d+$",
        description="Ray version of the cluster.",
    )
    ray_image: str = Field(
        default=DEFAULT_RAY_IMAGE,
        min_length=1,
        max_length=512,
        description="Container image with Ray, vLLM and slm_serving, used by head and workers.",
    )
    front_end: FrontEnd = Field(
        default=FrontEnd.HAPROXY,
        description="What takes HTTP requests in the Ray cluster: HAProxy, forwarding to the replicas "
        "directly (the fastest path), or ServeProxy, Ray Serve's Python proxy. Set in every Ray "
        "container's environment, so a change is a cluster upgrade, like rayImage.",
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec, description="How many replicas, driven by vLLM queue depth."
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec, description="How a new revision is validated and given traffic."
    )
    cluster_upgrade: ClusterUpgradeSpec = Field(
        default_factory=ClusterUpgradeSpec,
        description="Changes only a new Ray cluster can apply (rayImage, rayVersion, frontEnd): whether they "
        "wait for approval.",
    )
    network: NetworkSpec = Field(
        default_factory=NetworkSpec,
        description="Who may connect to the Ray pods (a NetworkPolicy the operator keeps per SLMDeployment).",
    )
    cost: CostSpec = Field(
        default_factory=CostSpec, description="Prices the cost per million output tokens is computed with."
    )
    router: RouterSpec = Field(default_factory=RouterSpec, description="Limits of the OpenAI router.")


# ---------------------------------------------------------------- status


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    CANARY_VALIDATED = "CanaryValidated"
    CLUSTER_UPGRADE = "ClusterUpgrade"
    ADAPTERS_READY = "AdaptersReady"


class Phase(StrEnum):
    PENDING = "Pending"
    DEPLOYING = "Deploying"
    READY = "Ready"
    VALIDATING = "Validating"
    SHADOWING = "Shadowing"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class Condition(ApiModel):
    """The `metav1.Condition` shape."""

    type: str = Field(description="Condition type: Ready, Progressing, Degraded or CanaryValidated.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: str = Field(description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(default=None, description="Generation the condition was set for.")


class RevisionTemplate(ApiModel):
    """The model-affecting part of the spec: what a revision hash is computed from."""

    model: ModelSpec = Field(description="The model of this revision.")
    adapters: list[AdapterSpec] = Field(default_factory=list, description="Its LoRA adapters.")
    gpus_per_replica: int = Field(default=1, description="GPUs per replica.")
    accelerator_type: str | None = Field(default=None, description="GPU model.")
    cpu: Quantity = Field(default="4", description="CPU per worker pod.")
    memory: Quantity = Field(default="16Gi", description="Memory per worker pod.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels its pods must match.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations of its pods.")


class RevisionStatus(ApiModel):
    name: str = Field(description="Revision hash.")
    role: Literal["stable", "canary"] = Field(description="stable or canary.")
    weight: int = Field(ge=0, le=100, description="Percent of user traffic it receives.")
    template: RevisionTemplate = Field(description="The spec it was built from (so it outlives spec edits).")
    ready_replicas: int = Field(default=0, description="Replicas serving.")
    desired_replicas: int | None = Field(
        default=None, description="Replicas the autoscaler wants (Ray Serve's target); unset until observed."
    )
    start_failure: str | None = Field(
        default=None,
        description=(
            "Why its replicas do not start: the first failed start's error, shortened (e.g. a model that "
            "cannot be fetched or loaded); unset once it runs."
        ),
    )


class PromptResult(ApiModel):
    name: str = Field(description="Golden prompt name.")
    passed: bool = Field(description="Whether the answer met every expectation.")
    answer: str = Field(default="", description="What the model answered (truncated).")
    reason: str = Field(default="", description="Which expectation failed.")
    latency_ms: float | None = Field(default=None, description="End-to-end latency.")


class ValidationResult(ApiModel):
    revision: str = Field(description="Revision validated.")
    passed: bool = Field(description="Whether the gate passed.")
    pass_rate: float = Field(description="Share of golden prompts passed.")
    time: str = Field(description="When it ran (RFC 3339).")
    reason: str = Field(default="", description="Why it failed, if it did.")
    results: list[PromptResult] = Field(default_factory=list, description="One entry per golden prompt.")


class LiveCheck(ApiModel):
    metric: Literal["latency", "ttft", "errors"] = Field(description="What was compared.")
    outcome: Literal["Pass", "Fail", "Inconclusive", "NotCompared"] = Field(description="This check's verdict.")
    canary_samples: int = Field(description="Canary requests (errors) or latency samples the check used.")
    stable_samples: int = Field(description="The same for the stable revision.")
    canary_median_ms: float | None = Field(default=None, description="Latency checks: the canary's median.")
    stable_median_ms: float | None = Field(default=None, description="Latency checks: the stable's median.")
    canary_p95_ms: float | None = Field(default=None, description="Latency checks: the canary's p95.")
    stable_p95_ms: float | None = Field(default=None, description="Latency checks: the stable's p95.")
    canary_error_rate: float | None = Field(default=None, description="Error check: the canary's errors per request.")
    stable_error_rate: float | None = Field(default=None, description="Error check: the stable's.")
    effect: float | None = Field(
        default=None, description="Latency checks: canary median / stable median. Error check: the canary's rate."
    )
    allowed: float = Field(description="The spec's limit: maxLatencyRatio, maxTtftRatio or maxErrorRate.")
    p_value: float | None = Field(
        default=None,
        description="One-sided p-value that the canary is worse than allowed (Mann-Whitney U; errors: binomial).",
    )
    reason: str = Field(default="", description="The verdict in words.")


class LiveComparison(ApiModel):
    revision: str = Field(description="Canary revision judged.")
    step: int = Field(description="Index of the traffic step.")
    weight: int = Field(description="Canary weight at that step.")
    time: str = Field(description="When it was judged (RFC 3339).")
    outcome: Literal["Pass", "Fail", "Inconclusive"] = Field(description="Pass, Fail or Inconclusive (wait).")
    reason: str = Field(default="", description="Why, in words.")
    checks: list[LiveCheck] = Field(default_factory=list, description="Latency, TTFT and errors, each with figures.")


class RevisionCost(ApiModel):
    revision: str = Field(description="Revision hash.")
    role: Literal["stable", "canary"] = Field(description="stable or canary.")
    accelerator: str = Field(description="What is paid for: the acceleratorType, 'gpu' (unnamed) or 'cpu'.")
    units_per_replica: float = Field(description="GPUs per replica, or CPU cores per replica for CPU revisions.")
    unit_hour_price: float = Field(description="Price of one GPU-hour (CPU-core-hour) used.")
    accelerator_seconds: float = Field(description="Replicas x units per replica x seconds, since the step began.")
    requests: int = Field(description="Requests it answered in that time.")
    prompt_tokens: int = Field(description="Prompt tokens of its successful requests in that time.")
    completion_tokens: int = Field(description="Generated tokens of its successful requests in that time.")
    cost: float = Field(description="accelerator_seconds / 3600 x unit_hour_price.")
    cost_per_million_output_tokens: float | None = Field(
        default=None, description="cost / completion_tokens x 10^6; unset before any token."
    )


class CostComparison(ApiModel):
    revision: str = Field(description="Canary revision judged.")
    step: int = Field(description="Index of the traffic step.")
    weight: int = Field(description="Canary weight at that step.")
    since: str = Field(description="Start of the step: what the figures cover (RFC 3339).")
    time: str = Field(description="When they were last updated (RFC 3339).")
    outcome: Literal["Pass", "Fail", "Inconclusive", "NotCompared"] = Field(
        description="maxCostRatio's verdict; NotCompared without maxCostRatio or without stable traffic."
    )
    ratio: float | None = Field(
        default=None,
        description="Canary cost per output token / the stable's, each scaled to an equal traffic share.",
    )
    allowed: float | None = Field(default=None, description="maxCostRatio.")
    reason: str = Field(default="", description="The verdict in words.")
    revisions: list[RevisionCost] = Field(default_factory=list, description="Canary and stable, with figures.")


class ShadowDisagreement(ApiModel):
    prompt: str = Field(description="What the user asked (truncated).")
    stable: str = Field(description="The answer the user got (truncated).")
    canary: str = Field(description="The canary's answer (truncated).")
    distance: float = Field(description="How different, 0 to 1 (1 - text similarity; expectations: rules split).")


class ShadowResult(ApiModel):
    revision: str = Field(description="Canary revision shadowed.")
    since: str = Field(description="When the shadow phase began (RFC 3339).")
    time: str = Field(description="When it was last judged (RFC 3339).")
    outcome: Literal["Pass", "Fail", "Inconclusive"] = Field(description="Pass, Fail or Inconclusive (wait).")
    reason: str = Field(default="", description="Why, in words.")
    comparison: str = Field(description="exact, normalized or expectations.")
    copies: int = Field(default=0, description="Requests copied to the canary.")
    pairs: int = Field(default=0, description="Pairs compared (both answered).")
    agreed: int = Field(default=0, description="Pairs whose answers agree.")
    agreement: float | None = Field(default=None, description="agreed / pairs.")
    canary_errors: int = Field(default=0, description="Copies the canary failed.")
    stable_errors: int = Field(default=0, description="Copies whose user answer failed (not compared).")
    error_rate: float | None = Field(default=None, description="canaryErrors per finished copy.")
    skipped: int = Field(default=0, description="Sampled requests not copied (over maxShadowRps or maxInFlight).")
    latency_ratio: float | None = Field(default=None, description="Median of canary / stable latency over the pairs.")
    stable_median_ms: float | None = Field(default=None, description="Median latency of the user answers compared.")
    canary_median_ms: float | None = Field(default=None, description="Median latency of the canary's answers.")
    worst: list[ShadowDisagreement] = Field(
        default_factory=list, description="The most different answers (at most 5, truncated to 200 characters)."
    )


class RolloutStatus(ApiModel):
    step: int = Field(default=-1, description="Index of the current traffic step; -1 before any traffic.")
    step_started_at: str | None = Field(default=None, description="When the current step began (RFC 3339).")
    started_at: str | None = Field(default=None, description="When the rollout began.")
    paused: bool = Field(default=False, description="Held by the pause command.")
    last_command: str | None = Field(default=None, description="Last manual command acted upon.")
    shadow_started_at: str | None = Field(
        default=None, description="When the shadow phase began (RFC 3339); unset outside it."
    )


class WorkerPodSettings(ApiModel):
    """What a worker group's pod template is made of: one group per distinct value."""

    gpus: int = Field(default=1, description="GPUs per pod.")
    accelerator_type: str | None = Field(default=None, description="GPU model (nvidia.com/gpu.product).")
    cpu: Quantity = Field(default="4", description="CPU request and limit.")
    memory: Quantity = Field(default="16Gi", description="Memory request and limit.")
    pvc_claims: list[str] = Field(default_factory=list, description="PersistentVolumeClaims mounted read-only.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pods must match.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations of the pods.")
    credentials_secret: str | None = Field(default=None, description="Secret the credential keys are read from.")
    credential_keys: list[str] = Field(
        default_factory=list, description="Keys of that Secret the pods get (those the model sources' loaders read)."
    )


class WorkerGroupStatus(ApiModel):
    name: str = Field(description="groupName in the RayService.")
    pod: WorkerPodSettings = Field(description="Its pod settings.")


class PendingClusterUpgrade(ApiModel):
    id: str = Field(description="Hash of the new cluster's config: approve with slm.dev/approve-cluster-upgrade=<id>.")
    reason: str = Field(description="What only a new cluster can apply.")
    extra_gpus: int = Field(description="GPUs needed on top of today's while both clusters run.")
    ray_version: str = Field(description="Ray version of the new cluster.")
    ray_image: str = Field(description="Image of the new cluster.")
    front_end: FrontEnd = Field(default=FrontEnd.HAPROXY, description="HTTP front end of the new cluster.")


class ClusterStatus(ApiModel):
    """The Ray cluster the RayService asks KubeRay for: worker groups only grow, in first-seen order,
    so that KubeRay updates the running cluster in place instead of building a second one."""

    ray_version: str = Field(description="Ray version of the running cluster.")
    ray_image: str = Field(description="Image of the running cluster.")
    front_end: FrontEnd = Field(
        default=FrontEnd.SERVE_PROXY,
        description="HTTP front end of the running cluster (absent in a status written before there was a "
        "choice: then the cluster runs ServeProxy).",
    )
    worker_groups: list[WorkerGroupStatus] = Field(
        default_factory=list, description="Worker groups in the order KubeRay has them (unused ones at 0 pods)."
    )
    upgrade_id: str | None = Field(default=None, description="The cluster upgrade the RayService last declared.")
    pending_upgrade: PendingClusterUpgrade | None = Field(
        default=None, description="A cluster upgrade the spec asks for and that has not started."
    )


class AdapterPhase(StrEnum):
    LOADING = "Loading"
    VALIDATING = "Validating"
    STEPPING = "Stepping"
    STABLE = "Stable"
    FAILED = "Failed"


class AdapterVersionStatus(ApiModel):
    version: str = Field(description="Hash of the source.")
    source: str = Field(description="Where its weights are.")
    weight: int = Field(ge=0, le=100, description="Percent of the requests naming the adapter it answers.")


class AdapterRolloutStatus(ApiModel):
    name: str = Field(description="The adapter's name (what clients send as `model`).")
    phase: AdapterPhase = Field(description="Loading, Validating, Stepping, Stable or Failed.")
    stable: AdapterVersionStatus | None = Field(default=None, description="The version serving it.")
    canary: AdapterVersionStatus | None = Field(default=None, description="The version being rolled out.")
    step: int = Field(default=0, ge=0, description="Index of the current traffic step while Stepping.")
    since: str = Field(description="When the phase or step began (RFC 3339).")
    failed_source: str | None = Field(
        default=None, description="A source that was rolled back: not retried until the spec names another."
    )
    validation: ValidationResult | None = Field(default=None, description="The canary's last golden-prompt gate.")


class SLMDeploymentStatus(ApiModel):
    phase: Phase = Field(default=Phase.PENDING, description="Summary state.")
    observed_generation: int | None = Field(default=None, description="Last spec generation acted upon.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="metav1.Condition list.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    stable_revision: str | None = Field(default=None, description="Revision serving user traffic.")
    canary_revision: str | None = Field(default=None, description="Revision being rolled out.")
    canary_weight: int = Field(default=0, description="Percent of traffic on the canary.")
    revisions: list[RevisionStatus] = Field(default_factory=list, description="Live revisions.")
    adapters: list[AdapterRolloutStatus] = Field(
        default_factory=list,
        description="LoRA adapters rolled out inside the stable revision: each one's stable and canary version "
        "and their weights.",
    )
    ready_replicas: int = Field(default=0, description="Replicas serving, all revisions together.")
    rollout: RolloutStatus | None = Field(default=None, description="Progress of the current rollout.")
    last_validation: ValidationResult | None = Field(default=None, description="Most recent validation gate.")
    last_live: LiveComparison | None = Field(
        default=None, description="Most recent live comparison of canary and stable at a traffic step."
    )
    last_shadow: ShadowResult | None = Field(
        default=None, description="Most recent shadow phase: pairs, agreement, latency, errors, worst disagreements."
    )
    last_cost: CostComparison | None = Field(
        default=None, description="Cost per million output tokens of canary and stable at the latest traffic step."
    )
    endpoint: str | None = Field(default=None, description="In-cluster URL of the OpenAI-compatible API.")
    cluster: ClusterStatus | None = Field(default=None, description="The Ray cluster asked of KubeRay.")
    message: str = Field(default="", description="What is happening, for humans.")


class SLMDeployment(ApiModel):
    api_version: Literal["slm.dev/v1alpha1"] = Field(default="slm.dev/v1alpha1", description="slm.dev/v1alpha1")
    kind: Literal["SLMDeployment"] = Field(default="SLMDeployment", description="SLMDeployment")
    metadata: dict[str, JsonValue] = Field(default_factory=dict, description="Standard object metadata.")
    spec: SLMDeploymentSpec
    status: SLMDeploymentStatus | None = None

    @model_validator(mode="after")
    def _default_served_model_name(self) -> SLMDeployment:
        """spec.model.servedModelName defaults to the object's name (as KServe does)."""
        if not self.spec.model.served_model_name:
            self.spec.model.served_model_name = str(self.metadata.get("name") or "")
        return self
