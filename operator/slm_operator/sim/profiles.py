"""Calibrated parameters of one vLLM replica per (model size, GPU type), and of its start-up.

Every figure has its source in docs/autoscaling.md ("Calibration"); those marked *estimate* there are
derived (memory-bandwidth roofline, scaled from a measured neighbour), not measured. The `tiny-cpu`
profile is this project's tiny model on 2 CPU cores, measured by bench/autoscale.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

from slm_operator.api.models import SLMDeploymentSpec
from slm_operator.rollout.cost import DEFAULT_GPU_HOUR_PRICES


@dataclass(frozen=True)
class Startup:
    """Replica start-up phases, each lognormal: (median seconds, sigma of its logarithm)."""

    schedule: tuple[float, float]
    """Pod scheduled and started on a node with a free GPU."""
    image_pull: tuple[float, float]
    """Pulling the serving image when the node does not have it."""
    image_cached: float
    """Share of starts that find the image already on the node (pull skipped)."""
    weight_load: tuple[float, float]
    """Weights from the model store into GPU memory."""
    warmup: tuple[float, float]
    """vLLM engine start: profiling, KV-cache allocation, CUDA graphs; then Serve marks the replica RUNNING."""

    @property
    def median_s(self) -> float:
        pull = (1 - self.image_cached) * self.image_pull[0]
        return self.schedule[0] + pull + self.weight_load[0] + self.warmup[0]


@dataclass(frozen=True)
class EngineProfile:
    """One replica of a model on one GPU type, as a continuous-batching server."""

    name: str
    model_size: str
    gpu_type: str
    itl_s: float
    """Time per output token with one running request."""
    itl_per_seq_s: float
    """Added time per output token for each further running request (decode slows as the batch grows)."""
    prefill_tokens_per_s: float
    """Prompt tokens a replica prefills per second (time to first token beyond queueing)."""
    kv_seqs: int
    """Requests the KV cache holds at once at ~1k tokens of context (vLLM's batch is capped by it)."""
    default_max_num_seqs: int
    """vLLM's `max_num_seqs` when engineArgs leaves it out."""
    startup: Startup
    gpu_hour_usd: float
    """On-demand price of one GPU-hour (estimate: list prices vary by cloud and region)."""
    shared_compute: bool = False
    """Replicas share one machine's compute (the 2-core box): the batch that sets the speed is all
    running requests of the deployment, not one replica's."""
    startup_slowdown: float = 0.0
    """On a shared machine, how much slower serving gets while a replica starts beside it (0.5: time
    per token x1.5 per starting replica)."""

    def max_batch(self, max_num_seqs: int | None, max_ongoing_requests: int) -> int:
        """Requests one replica runs at once: vLLM's limits, and Serve's max_ongoing_requests."""
        seqs = max_num_seqs if max_num_seqs is not None else self.default_max_num_seqs
        return max(1, min(seqs, self.kv_seqs, max_ongoing_requests))


_GPU_START = Startup(
    schedule=(2.0, 0.5), image_pull=(45.0, 0.4), image_cached=0.8, weight_load=(5.0, 0.3), warmup=(30.0, 0.3)
)


def _startup(weights_gb: float, load_gb_per_s: float = 1.0) -> Startup:
    """GPU start-up with weight loading at `load_gb_per_s` (model store in the same region)."""
    return Startup(
        schedule=_GPU_START.schedule,
        image_pull=_GPU_START.image_pull,
        image_cached=_GPU_START.image_cached,
        weight_load=(max(2.0, weights_gb / load_gb_per_s), 0.3),
        warmup=_GPU_START.warmup,
    )


L4: Final = "NVIDIA-L4"
A100: Final = "NVIDIA-A100-SXM4-40GB"
H100: Final = "NVIDIA-H100-80GB-HBM3"
CPU: Final = "cpu-2-cores"
L4_USD, A100_USD, H100_USD = (DEFAULT_GPU_HOUR_PRICES[gpu] for gpu in (L4, A100, H100))
"""Per GPU-hour: the operator's default prices (`rollout.cost`), so `slm plan` and status agree."""

PROFILES: Final[dict[tuple[str, str], EngineProfile]] = {
    (p.model_size, p.gpu_type): p
    for p in (
        EngineProfile("qwen2.5-0.5b/L4", "0.5B", L4, 0.0051, 0.000065, 10_000, 256, 256, _startup(1.0), L4_USD),
        EngineProfile("qwen2.5-0.5b/H100", "0.5B", H100, 0.0030, 0.000020, 60_000, 256, 256, _startup(1.0), H100_USD),
        EngineProfile("phi-3-mini/L4", "3.8B", L4, 0.028, 0.00015, 4_000, 35, 256, _startup(7.6), L4_USD),
        EngineProfile("phi-3-mini/H100", "3.8B", H100, 0.0050, 0.000030, 35_000, 160, 256, _startup(7.6), H100_USD),
        EngineProfile("llama-3.1-8b/L4", "8B", L4, 0.060, 0.00030, 2_000, 42, 256, _startup(16.0), L4_USD),
        EngineProfile("llama-3.1-8b/A100", "8B", A100, 0.0133, 0.00012, 10_000, 150, 256, _startup(16.0), A100_USD),
        EngineProfile("llama-3.1-8b/H100", "8B", H100, 0.0070, 0.000050, 20_000, 256, 256, _startup(16.0), H100_USD),
    )
}

TINY_CPU: Final = EngineProfile(
    "tiny/cpu-2-cores",
    "tiny",
    CPU,
    itl_s=0.0060,
    itl_per_seq_s=0.00055,
    prefill_tokens_per_s=2_000,
    kv_seqs=256,
    default_max_num_seqs=256,
    startup=Startup(
        schedule=(1.0, 0.2), image_pull=(0.0, 0.0), image_cached=1.0, weight_load=(1.0, 0.2), warmup=(95.0, 0.15)
    ),
    gpu_hour_usd=0.0,
    shared_compute=True,
    startup_slowdown=0.7,
)
"""The tiny test model under `slm serve` on 2 cores (fitted to bench/autoscale.py, see docs)."""

GPU_TYPES: Final = (L4, A100, H100)
_SIZES: Final = (("0.5B", 0.5), ("3.8B", 3.8), ("8B", 8.0))


def model_size_of(source: str) -> str:
    """The nearest calibrated size for a model source: from a '<n>B' in its name ('mini' is Phi-3's 3.8B)."""
    if source.startswith("tiny://"):
        return "tiny"
    lowered = source.lower()
    found = re.findall(r"(\d+(?:\.\d+)?)b(?![a-z])", lowered)
    if found:
        billions = float(found[-1])
    elif "mini" in lowered:
        billions = 3.8
    else:
        billions = 8.0
    return min(_SIZES, key=lambda size: abs(math.log(size[1]) - math.log(max(billions, 0.1))))[0]


def profile_for(spec: SLMDeploymentSpec, gpu_type: str | None = None) -> EngineProfile:
    """The profile simulating `spec`: by model size, on `gpu_type` (else spec's acceleratorType, else L4).

    A GPU type without a profile for that size falls back to the closest one in the table (L4 → A100
    → H100 order); an unknown GPU type is refused.
    """
    size = model_size_of(spec.model.source)
    if size == "tiny":
        return TINY_CPU
    wanted = gpu_type or spec.resources.accelerator_type or L4
    if wanted not in GPU_TYPES:
        raise ValueError(f"no calibration for GPU type {wanted!r}; known: {', '.join(GPU_TYPES)}")
    if (size, wanted) in PROFILES:
        return PROFILES[(size, wanted)]
    order = list(GPU_TYPES)
    nearest = min((g for g in order if (size, g) in PROFILES), key=lambda g: abs(order.index(g) - order.index(wanted)))
    return PROFILES[(size, nearest)]
