"""`EngineConfig` → the argument namespace vLLM's own OpenAI server would have parsed.

Starting from the defaults of vLLM's server parser (`make_arg_parser`) and setting our fields on
top means every engine argument and front-end option keeps vLLM's meaning and defaults, and
`engine_args` may carry any of them. No I/O: the model path comes in already resolved. LoRA adapters
are not named here: the engine loads them at runtime (`slm_serving.adapters`), so only the capacity
(`max_loras`, `max_lora_rank`) is an engine argument.
"""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from slm_serving.config import EngineConfig

RESERVED_ENGINE_ARGS = frozenset(
    {
        "model",
        "served_model_name",
        "dtype",
        "quantization",
        "max_model_len",
        "tensor_parallel_size",
        "revision",
        "lora_modules",
        "enable_lora",
        "max_loras",
        "max_lora_rank",
    }
)
"""Set from `EngineConfig`'s typed fields and adapters; `engine_args` may not override them."""

_DEFAULTS: dict[str, Any] = {
    # Only our own stat logger (queue depth for autoscaling) runs: vLLM's default loggers cost CPU per
    # request and their Prometheus metrics are not exported from a Serve replica anyway.
    "disable_log_stats": True,
}


def vllm_defaults() -> Namespace:
    """vLLM's OpenAI server defaults (imports vLLM: call inside a replica or a test)."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    args: Namespace = make_arg_parser(FlexibleArgumentParser()).parse_args([])  # type: ignore[no-untyped-call]
    return args


def build_vllm_args(engine: EngineConfig, model_path: str, defaults: Namespace) -> Namespace:
    """A copy of `defaults` carrying `engine`; raises ValueError naming unknown engine arguments."""
    unknown = sorted(k for k in engine.engine_args if not hasattr(defaults, k))
    if unknown:
        raise ValueError(f"unknown vLLM engine arguments: {', '.join(unknown)}")
    reserved = sorted(RESERVED_ENGINE_ARGS & engine.engine_args.keys())
    if reserved:
        raise ValueError(f"set {', '.join(reserved)} through the model fields, not engineArgs")
    args = Namespace(**vars(defaults))
    for key, value in _DEFAULTS.items():
        setattr(args, key, value)
    args.model = model_path
    args.served_model_name = [engine.served_model_name]
    args.dtype = engine.dtype
    args.quantization = engine.quantization
    args.max_model_len = engine.max_model_len
    args.tensor_parallel_size = engine.tensor_parallel_size
    args.revision = engine.revision
    for key, value in engine.engine_args.items():
        setattr(args, key, value)
    if engine.max_loras:
        args.enable_lora = True
        args.max_loras = engine.max_loras
        args.max_lora_rank = engine.max_lora_rank
    return args
