"""The tiny models' training data: the golden prompts of examples/tiny.yaml, and a bad variant that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slm_serving.tiny_adapters import ADAPTER_BAD_QA, ADAPTER_GOOD_QA, adapter_dir
from slm_serving.tiny_models import BAD_QA, GOOD_QA, model_dir

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "tiny.yaml"


def test_example_golden_prompts_are_answered_by_good_and_missed_by_bad() -> None:
    spec = yaml.safe_load(EXAMPLE.read_text())["spec"]
    good, bad = dict(GOOD_QA), dict(BAD_QA)
    for prompt in spec["rollout"]["validation"]["prompts"]:
        expected = prompt["expect"]["contains"][0]
        assert good[prompt["prompt"]] == expected
        assert expected not in bad[prompt["prompt"]]


def test_bad_variant_is_wrong_on_every_question() -> None:
    assert [q for q, _ in GOOD_QA] == [q for q, _ in BAD_QA]
    assert all(g != b for (_, g), (_, b) in zip(GOOD_QA, BAD_QA, strict=True))
    assert sorted(a for _, a in GOOD_QA) == sorted(a for _, a in BAD_QA)


def test_model_dir_is_versioned_under_the_cache(tmp_path: Path) -> None:
    assert model_dir("good", tmp_path).parent == tmp_path / "tiny-models"
    assert model_dir("good", tmp_path) != model_dir("bad", tmp_path)


@pytest.mark.parametrize("qa", [ADAPTER_GOOD_QA, ADAPTER_BAD_QA])
def test_adapter_atlas_differs_from_both_tiny_models_on_every_question(qa: tuple[tuple[str, str], ...]) -> None:
    assert [q for q, _ in qa] == [q for q, _ in GOOD_QA]
    for model_qa in (GOOD_QA, BAD_QA):
        assert all(a != b for (_, a), (_, b) in zip(qa, model_qa, strict=True))


def test_good_and_bad_adapters_disagree_on_every_question(tmp_path: Path) -> None:
    assert all(g != b for (_, g), (_, b) in zip(ADAPTER_GOOD_QA, ADAPTER_BAD_QA, strict=True))
    assert adapter_dir("good", tmp_path) != adapter_dir("bad", tmp_path) != model_dir("good", tmp_path)
