"""The typed SLMDeployment API (spec and status): the single source of truth for the CRD.

`slm_operator.api.crd` generates the CRD's openAPIV3Schema from these models; cross-field rules are
CEL `x-kubernetes-validations` attached with `cel_rules`, evaluated by the API server and by
`slm validate` alike.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

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


def cel_rules(*rules: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules: (rule, message[, fieldPath])."""
    validations = []
    for rule in rules:
        entry = {"rule": rule[0], "message": rule[1]}
        if len(rule) == 3:
            entry["fieldPath"] = rule[2]
        validations.append(entry)
    return {"x-kubernetes-validations": validations}


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", use_enum_values=False)


# ---------------------------------------------------------------- spec.model / spec.adapters


class SecretKeyRef(ApiModel):
    name: str = Field(description="Name of a Secret in the SLMDeployment's namespace.", min_length=1)


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
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        description="Name clients pass as `model` in OpenAI requests.",
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
        description="Further vLLM engine arguments (snake_case names, e.g. gpu_memory_utilization), "
        "passed through unchanged.",
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


# ---------------------------------------------------------------- spec.resources


class Toleration(ApiModel):
    key: str | None = Field(default=None, description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value to match (with Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(default=None, description="How long a NoExecute taint is tolerated.")


Quantity = Annotated[
    str | int,
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
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the GPU worker pods must match."
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


class ChatMessage(ApiModel):
    role: Literal["system", "user", "assistant"] = Field(description="Author of the message.")
    content: str = Field(max_length=16384, description="Text of the message.")


class Expectation(ApiModel):
    contains: list[str] = Field(
        default_factory=list, max_length=32, description="Substrings the answer must contain (all of them)."
    )
    not_contains: list[str] = Field(
        default_factory=list, max_length=32, description="Substrings the answer must not contain."
    )
    regex: str | None = Field(
        default=None, max_length=1024, description="Python regular expression the answer must match (search)."
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


class ValidationSpec(ApiModel):
    prompts: list[GoldenPrompt] = Field(
        default_factory=list,
        max_length=256,
        description="Golden prompts sent to the canary (pinned, before any user traffic) and the stable revision.",
    )
    min_pass_rate: float = Field(
        default=1.0, ge=0, le=1, description="Share of golden prompts the canary must pass (0 to 1)."
    )
    max_latency_ratio: float = Field(
        default=1.5, ge=1, le=100, description="Canary p95 latency may be at most this multiple of the stable's."
    )
    max_ttft_ratio: float = Field(
        default=1.5, ge=1, le=100, description="Canary p95 time to first token may be at most this multiple."
    )
    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Most errors per request the canary may have (0 to 1)."
    )
    quality_check_interval_seconds: int = Field(
        default=0,
        ge=0,
        le=86400,
        description="Re-run the golden prompts on the stable revision this often (0: never).",
    )


class RolloutSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
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


# ---------------------------------------------------------------- spec


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
        default=DEFAULT_RAY_VERSION, pattern=r"^\d+\.\d+\.\d+$", description="Ray version of the cluster."
    )
    ray_image: str = Field(
        default=DEFAULT_RAY_IMAGE,
        min_length=1,
        description="Container image with Ray, vLLM and slm_serving, used by head and workers.",
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec, description="How many replicas, driven by vLLM queue depth."
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec, description="How a new revision is validated and given traffic."
    )
    router: RouterSpec = Field(default_factory=RouterSpec, description="Limits of the OpenAI router.")


# ---------------------------------------------------------------- status


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    CANARY_VALIDATED = "CanaryValidated"


class Phase(StrEnum):
    PENDING = "Pending"
    DEPLOYING = "Deploying"
    READY = "Ready"
    VALIDATING = "Validating"
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


class RevisionStatus(ApiModel):
    name: str = Field(description="Revision hash.")
    role: Literal["stable", "canary"] = Field(description="stable or canary.")
    weight: int = Field(ge=0, le=100, description="Percent of user traffic it receives.")
    template: RevisionTemplate = Field(description="The spec it was built from (so it outlives spec edits).")
    ready_replicas: int = Field(default=0, description="Replicas serving.")
    desired_replicas: int | None = Field(
        default=None, description="Replicas the autoscaler wants (Ray Serve's target); unset until observed."
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


class RolloutStatus(ApiModel):
    step: int = Field(default=-1, description="Index of the current traffic step; -1 before any traffic.")
    step_started_at: str | None = Field(default=None, description="When the current step began (RFC 3339).")
    started_at: str | None = Field(default=None, description="When the rollout began.")
    paused: bool = Field(default=False, description="Held by the pause command.")
    last_command: str | None = Field(default=None, description="Last manual command acted upon.")


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
    ready_replicas: int = Field(default=0, description="Replicas serving, all revisions together.")
    rollout: RolloutStatus | None = Field(default=None, description="Progress of the current rollout.")
    last_validation: ValidationResult | None = Field(default=None, description="Most recent validation gate.")
    endpoint: str | None = Field(default=None, description="In-cluster URL of the OpenAI-compatible API.")
    message: str = Field(default="", description="What is happening, for humans.")


class SLMDeployment(ApiModel):
    api_version: Literal["slm.dev/v1alpha1"] = Field(default="slm.dev/v1alpha1", description="slm.dev/v1alpha1")
    kind: Literal["SLMDeployment"] = Field(default="SLMDeployment", description="SLMDeployment")
    metadata: dict[str, JsonValue] = Field(default_factory=dict, description="Standard object metadata.")
    spec: SLMDeploymentSpec
    status: SLMDeploymentStatus | None = None
