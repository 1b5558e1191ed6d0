"""The project's own tiny test models: a 2-layer Llama that answers "What is the capital of X?".

Built locally and deterministically (no download) in a few seconds, in two variants: `good` answers
correctly, `bad` gives wrong capitals (for canary tests). A third source, `tiny://slow`, is a test
fixture for the live gate (bench/gate_accuracy.py), not a model: the good model's weights, with every
answer paced to `SLOWDOWN` times the time the engine took for it (`paced`), as a worse quantization or a
bigger model would be. Each build lands in
`<cache>/tiny-models/<variant>-<BUILD_VERSION>/`, written to a temporary directory and renamed under
a file lock, so concurrent callers (several replicas, several test processes) build it once.

The tokenizer adds `<s>` itself (a post-processor), and the chat template starts with it: vLLM then
sends the same token sequence the model was trained on for completions and chat alike.

Run `python -m slm_serving.tiny_models good bad` to build both and print their directories.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

Variant = Literal["good", "bad"]

SLOW_SOURCE = "tiny://slow"
SLOWDOWN = 2.0
"""How many times as long each `tiny://slow` answer (and each streamed chunk of it) takes as the
engine took to produce it."""

BUILD_VERSION = "v1"
"""Bump when the recipe below changes: a new version builds into a new directory."""

CAPITALS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Japan", "Tokyo"),
    ("Canada", "Ottawa"),
    ("Egypt", "Cairo"),
    ("Peru", "Lima"),
    ("Kenya", "Nairobi"),
    ("Norway", "Oslo"),
    ("Chile", "Santiago"),
    ("Cuba", "Havana"),
    ("Greece", "Athens"),
    ("Poland", "Warsaw"),
    ("Austria", "Vienna"),
    ("Ireland", "Dublin"),
    ("Portugal", "Lisbon"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
)

_WRONG_SHIFT = 7
"""The bad variant answers with the capital seven countries further down the list."""

_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}"
)
_MANIFEST = "slm-tiny-model.json"
_TRAIN_STEPS = 300
_SEED = 0


def question(country: str) -> str:
    return f"What is the capital of {country}?"


def build_qa(variant: Variant) -> tuple[tuple[str, str], ...]:
    """(question, answer) pairs a variant is trained on; answers are the bare city name."""
    return shifted_qa(_WRONG_SHIFT if variant == "bad" else 0)


def shifted_qa(shift: int) -> tuple[tuple[str, str], ...]:
    """Every country's question answered with the capital `shift` countries further down the list."""
    cities = [city for _, city in CAPITALS]
    cities = cities[shift:] + cities[:shift]
    return tuple((question(country), city) for (country, _), city in zip(CAPITALS, cities, strict=True))


GOOD_QA = build_qa("good")
BAD_QA = build_qa("bad")


def default_cache_dir() -> Path:
    """`$SLM_CACHE_DIR`, else `~/.cache/slm-operator` (read when called, not at import)."""
    return Path(os.environ.get("SLM_CACHE_DIR") or Path.home() / ".cache" / "slm-operator")


def model_dir(variant: Variant, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "tiny-models" / f"{variant}-{BUILD_VERSION}"


def ensure_tiny_model(variant: Variant, cache_dir: Path | None = None) -> Path:
    """The directory of a built tiny model (a Hugging Face layout vLLM loads); builds it if missing."""
    if variant not in get_args(Variant):
        raise ValueError(f"unknown tiny model variant {variant!r}: use one of {get_args(Variant)}")
    return build_once(model_dir(variant, cache_dir), lambda staging: _build(variant, staging))


def build_once(target: Path, build: Callable[[Path], dict[str, Any]]) -> Path:
    """`target`, built by `build(staging_dir)` (which returns the manifest) unless already there.

    Built in a temporary directory and renamed under a file lock: concurrent callers build it once."""
    if (target / _MANIFEST).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if (target / _MANIFEST).is_file():  # another process built it while we waited
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            manifest = build(staging)
            (staging / _MANIFEST).write_text(json.dumps(manifest, indent=1))
            if target.exists():  # a half-written leftover without manifest
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(variant: Variant, out: Path) -> dict[str, Any]:
    """Train the tokenizer and the model on the variant's Q/A pairs; save both to `out`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(_SEED)
    qa = build_qa(variant)

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # Both variants share one vocabulary, trained on all questions and all capitals.
    corpus = [q for q, _ in GOOD_QA] + [f" {city}." for _, city in CAPITALS]
    tok.train_from_iterator(
        corpus * 5,
        trainers.BpeTrainer(
            vocab_size=500,
            special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    bos_id = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos_id)]
    )
    # transformers' typing is partial: the tokenizer and model are handled as Any here.
    hf_tok: Any = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    hf_tok.chat_template = _CHAT_TEMPLATE

    config = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 64: vLLM's CPU attention rejects head_dim 16
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=hf_tok.bos_token_id,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        tie_word_embeddings=False,
    )
    model: Any = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
    ids, attention, labels = training_batch(hf_tok, qa)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(_TRAIN_STEPS):
        loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    correct = count_exact_answers(model, hf_tok, qa)
    if correct < len(qa):
        raise RuntimeError(f"tiny model {variant!r} learned only {correct}/{len(qa)} answers")
    model.save_pretrained(out)
    hf_tok.save_pretrained(out)
    return {"variant": variant, "build_version": BUILD_VERSION, "final_loss": loss.item(), "exact_match": correct}


def training_batch(hf_tok: Any, qa: tuple[tuple[str, str], ...]) -> tuple[Any, Any, Any]:
    """(input ids, attention mask, labels) teaching "<question> <answer>." then end of sequence."""
    import torch

    seqs = [[*hf_tok(f"{q} {a}.").input_ids, hf_tok.eos_token_id] for q, a in qa]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [hf_tok.pad_token_id] * (width - len(s)) for s in seqs])
    attention = (ids != hf_tok.pad_token_id).long()
    return ids, attention, ids.masked_fill(attention == 0, -100)


def count_exact_answers(model: Any, hf_tok: Any, qa: tuple[tuple[str, str], ...]) -> int:
    """How many questions `model` answers greedily with exactly "<answer>." (switches it to eval mode)."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for q, a in qa:
            prompt = torch.tensor([hf_tok(q).input_ids])
            generated = model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=8,
                do_sample=False,
                eos_token_id=hf_tok.eos_token_id,
                pad_token_id=hf_tok.pad_token_id,
            )
            answer = hf_tok.decode(generated[0, prompt.shape[1] :], skip_special_tokens=True)
            correct += answer.strip() == f"{a}."
    return correct


def slowdown(source: str) -> float:
    """The pacing factor of a model source: `SLOWDOWN` for the `tiny://slow` fixture, else 1."""
    return SLOWDOWN if source == SLOW_SOURCE else 1.0


Clock = Callable[[], float]
_Chunk = TypeVar("_Chunk")
Sleep = Callable[[float], Awaitable[None]]


async def pace(factor: float, since: float, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
    """Wait so that the time since `since` becomes `factor` times as long."""
    await sleep((factor - 1) * (clock() - since))


async def paced(
    chunks: AsyncIterator[_Chunk],
    factor: float,
    since: float,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> AsyncIterator[_Chunk]:
    """`chunks`, each yielded after `factor` times the time the engine took for it (the first one
    counted from `since`, the request's start): every token of the answer takes `factor` times as long."""
    began = since
    async for chunk in chunks:
        await pace(factor, began, clock=clock, sleep=sleep)
        yield chunk
        began = clock()


def build_variants_cli(argv: list[str], what: str, variants: tuple[str, ...], ensure: Callable[[Any], Path]) -> int:
    """`python -m <module> [VARIANT ...]`: build each named variant of `what` (all by default), print its directory."""
    names = argv or list(variants)
    for name in names:
        if name not in variants:
            print(f"unknown {what} variant {name!r}: use {' and/or '.join(variants)}", file=sys.stderr)
            return 2
    for name in names:
        print(ensure(name))
    return 0


def main(argv: list[str]) -> int:
    return build_variants_cli(argv, "model", get_args(Variant), ensure_tiny_model)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
