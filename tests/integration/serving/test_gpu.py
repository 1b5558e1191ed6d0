"""GPU variant of the serving path: the tiny example with `gpusPerReplica: 1`, built by the operator's
builder (num_gpus on the engine deployment) and served by vLLM's CUDA build.

Skipped where `nvidia-smi -L` finds no GPU (every machine this project is built on). It needs the CUDA
`vllm` package in the environment (`make install` picks it when a GPU answers).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from openai import OpenAI

from slm_operator.api.models import SLMDeploymentSpec
from slm_operator.api.validation import parse_deployment
from slm_operator.builder.serve_config import build_serve_config
from slm_serving.local import LocalServe
from tests.conftest import EXAMPLES

pytestmark = [pytest.mark.gpu, pytest.mark.serving]


def _gpu_spec(example: Path = EXAMPLES / "tiny.yaml") -> SLMDeploymentSpec:
    obj = yaml.safe_load(example.read_text())
    obj["spec"]["resources"]["gpusPerReplica"] = 1
    return parse_deployment(obj).spec


def test_tiny_model_on_one_gpu_answers_completions_and_chat() -> None:
    spec = _gpu_spec()
    config = build_serve_config(spec, None)
    engine = config.applications[1].deployments[0]
    assert engine.ray_actor_options == {"num_cpus": 1, "num_gpus": 1}
    with LocalServe() as local:
        local.apply(config)
        client = OpenAI(base_url=f"{local.url}/v1", api_key="unused")
        text = (
            client.completions.create(
                model="tiny", prompt="What is the capital of France?", max_tokens=8, temperature=0
            )
            .choices[0]
            .text
        )
        assert "Paris" in text
        chat = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "What is the capital of Japan?"}], max_tokens=8
        )
        assert "Tokyo" in (chat.choices[0].message.content or "")
