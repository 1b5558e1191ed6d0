"""`build_vllm_args` against vLLM's real server-argument defaults (imports vLLM, no engine)."""

from __future__ import annotations

from argparse import Namespace

import pytest

from slm_serving.config import EngineConfig
from slm_serving.vllm_args import build_vllm_args, vllm_defaults


@pytest.fixture(scope="module")
def defaults() -> Namespace:
    return vllm_defaults()


def _engine(**changes: object) -> EngineConfig:
    base: dict[str, object] = {"source": "tiny://good", "served_model_name": "tiny", "dtype": "bfloat16"}
    return EngineConfig.model_validate(base | changes)


def test_typed_fields_and_engine_args_land_on_vllm_names(defaults: Namespace) -> None:
    engine = _engine(max_model_len=256, tensor_parallel_size=2, engine_args={"enforce_eager": True})
    args = build_vllm_args(engine, "/models/tiny", defaults)
    assert args.model == "/models/tiny"
    assert args.served_model_name == ["tiny"]
    assert (args.dtype, args.max_model_len, args.tensor_parallel_size) == ("bfloat16", 256, 2)
    assert args.enforce_eager is True
    assert args.disable_log_stats is True
    assert not args.enable_lora
    assert defaults.model != "/models/tiny"  # the defaults are copied, not changed


def test_engine_args_may_override_our_defaults(defaults: Namespace) -> None:
    args = build_vllm_args(_engine(engine_args={"disable_log_stats": False}), "/m", defaults)
    assert args.disable_log_stats is False


def test_lora_capacity_enables_runtime_lora(defaults: Namespace) -> None:
    args = build_vllm_args(_engine(max_loras=3, max_lora_rank=8), "/m", defaults)
    assert (args.enable_lora, args.max_loras, args.max_lora_rank) == (True, 3, 8)
    assert not args.lora_modules  # adapters are loaded at runtime, not named at start


@pytest.mark.parametrize(
    ("engine_args", "fragment"),
    [
        ({"no_such_option": 1}, "unknown vLLM engine arguments: no_such_option"),
        ({"model": "/other"}, "set model through the model fields"),
        ({"max_loras": 4}, "set max_loras through the model fields"),
    ],
)
def test_rejects_bad_engine_args(defaults: Namespace, engine_args: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        build_vllm_args(_engine(engine_args=engine_args), "/m", defaults)
