"""The project's tiny LoRA adapters: peft adapters on the `good` tiny model that answer other facts.

An adapter answers the same "What is the capital of X?" questions from its own fixed atlas, so a
request naming it is told apart from the base model by its answer: `good` answers with the capital
three countries further down the list, `bad` with the one eleven further down (both differ from the
base model and its bad variant, which shift by 0 and 7). Golden prompts for an adapter expect the
good atlas; the bad adapter misses every one of them.

Trained with peft (rank 8 on all seven Llama projections, 200 AdamW steps, one CPU thread, fixed
seed): ~45 CPU-seconds, the same bytes on every build. Cached in
`<cache>/tiny-models/lora-<variant>-<ADAPTER_BUILD_VERSION>/` like the tiny models, in the
layout vLLM's `add_lora` loads (`adapter_config.json`, `adapter_model.safetensors`).

Run `python -m slm_serving.tiny_adapters good bad` to build both and print their directories.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, get_args

from slm_serving.tiny_models import (
    BUILD_VERSION,
    build_once,
    build_variants_cli,
    count_exact_answers,
    default_cache_dir,
    ensure_tiny_model,
    shifted_qa,
    training_batch,
)

AdapterVariant = Literal["good", "bad"]

ADAPTER_BUILD_VERSION = f"v1-base{BUILD_VERSION}"
"""Bump when the recipe changes; it names the base model's build too (an adapter fits one base)."""

ADAPTER_RANK = 8
"""LoRA rank of both adapters: what `max_lora_rank` must allow."""

_SHIFTS: dict[AdapterVariant, int] = {"good": 3, "bad": 11}
_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_TRAIN_STEPS = 200
_LEARNING_RATE = 1e-2
_SEED = 0


def adapter_qa(variant: AdapterVariant) -> tuple[tuple[str, str], ...]:
    """(question, answer) pairs an adapter variant is trained on."""
    return shifted_qa(_SHIFTS[variant])


ADAPTER_GOOD_QA = adapter_qa("good")
ADAPTER_BAD_QA = adapter_qa("bad")


def adapter_dir(variant: AdapterVariant, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "tiny-models" / f"lora-{variant}-{ADAPTER_BUILD_VERSION}"


def ensure_tiny_adapter(variant: AdapterVariant, cache_dir: Path | None = None) -> Path:
    """The directory of a built tiny adapter (peft layout); builds it, and the base model, if missing."""
    if variant not in get_args(AdapterVariant):
        raise ValueError(f"unknown tiny adapter variant {variant!r}: use one of {get_args(AdapterVariant)}")
    base = ensure_tiny_model("good", cache_dir)
    return build_once(adapter_dir(variant, cache_dir), lambda staging: _train(variant, base, staging))


def _train(variant: AdapterVariant, base: Path, out: Path) -> dict[str, Any]:
    """Train a LoRA adapter on `base` for the variant's atlas; save it (adapter files only) to `out`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same reduction order on every machine: the same bytes
    try:
        torch.manual_seed(_SEED)
        hf_tok: Any = AutoTokenizer.from_pretrained(base)
        model: Any = AutoModelForCausalLM.from_pretrained(base)
        config = LoraConfig(
            r=ADAPTER_RANK,
            lora_alpha=2 * ADAPTER_RANK,
            target_modules=list(_TARGET_MODULES),
            lora_dropout=0.0,
            bias="none",
            task_type="CAUSAL_LM",
        )
        peft_model: Any = get_peft_model(model, config)
        qa = adapter_qa(variant)
        ids, attention, labels = training_batch(hf_tok, qa)
        optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=_LEARNING_RATE)
        peft_model.train()
        for _ in range(_TRAIN_STEPS):
            loss = peft_model(input_ids=ids, attention_mask=attention, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        correct = count_exact_answers(peft_model, hf_tok, qa)
        if correct < len(qa):
            raise RuntimeError(f"tiny adapter {variant!r} learned only {correct}/{len(qa)} answers")
        peft_model.save_pretrained(out)
    finally:
        torch.set_num_threads(threads)
    return {
        "variant": variant,
        "build_version": ADAPTER_BUILD_VERSION,
        "rank": ADAPTER_RANK,
        "final_loss": loss.item(),
        "exact_match": correct,
    }


def main(argv: list[str]) -> int:
    return build_variants_cli(argv, "adapter", get_args(AdapterVariant), ensure_tiny_adapter)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
