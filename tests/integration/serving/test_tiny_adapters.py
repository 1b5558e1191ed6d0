"""The tiny LoRA adapters (real peft 0.21.2 training on the real tiny base model; no Ray, no vLLM).

Builds `good` in the default cache (reused across runs) and once more in a fresh cache on the same
base model: the adapter weights must come out byte for byte the same. Then both adapters are loaded onto the base model
with peft and must answer their own atlas, which differs from the base model's on every question.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slm_serving.model_source import ensure_model_path
from slm_serving.tiny_adapters import ADAPTER_BAD_QA, ADAPTER_GOOD_QA, adapter_dir, ensure_tiny_adapter
from slm_serving.tiny_models import count_exact_answers, ensure_tiny_model, model_dir

WEIGHTS = "adapter_model.safetensors"


def test_adapter_build_is_deterministic(tmp_path: Path) -> None:
    cached = ensure_tiny_adapter("good")
    base = model_dir("good", tmp_path)  # the same base model, so only the adapter is trained again
    base.parent.mkdir(parents=True)
    base.symlink_to(ensure_tiny_model("good"), target_is_directory=True)
    fresh = ensure_tiny_adapter("good", tmp_path)
    assert fresh == adapter_dir("good", tmp_path)
    assert (fresh / WEIGHTS).read_bytes() == (cached / WEIGHTS).read_bytes()
    assert json.loads((fresh / "slm-tiny-model.json").read_text())["exact_match"] == len(ADAPTER_GOOD_QA)


def test_good_and_bad_adapters_answer_their_own_atlas() -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = ensure_tiny_model("good")
    tokenizer: Any = AutoTokenizer.from_pretrained(base)
    good_dir = Path(ensure_model_path("tiny://lora-good"))
    bad_dir = Path(ensure_model_path("tiny://lora-bad"))
    for directory, own in ((good_dir, ADAPTER_GOOD_QA), (bad_dir, ADAPTER_BAD_QA)):
        model: Any = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), directory)
        # The atlases differ on every question (tests/unit/serving/test_tiny_qa.py): all of its own right
        # means every answer of the other adapter and of the base model wrong.
        assert count_exact_answers(model, tokenizer, own) == len(own)
