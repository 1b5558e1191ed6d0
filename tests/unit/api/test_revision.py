"""A revision changes with the model-affecting spec only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from slm_operator.api.revision import compute_revision
from slm_operator.api.validation import parse_deployment
from tests.conftest import EXAMPLES


def _spec(mutate: Callable[[dict[str, Any]], Any] | None = None, example: str = "phi3-mini.yaml") -> str:
    obj = yaml.safe_load((EXAMPLES / example).read_text())
    if mutate:
        mutate(obj["spec"])
    return compute_revision(parse_deployment(obj).spec)


NEW_REVISION = [
    ("model source", lambda s: s["model"].update(source="hf://microsoft/Phi-3.5-mini-instruct")),
    ("model revision", lambda s: s["model"].update(revision="abc")),
    ("quantization", lambda s: s["model"].update(quantization="fp8")),
    ("engine args", lambda s: s["model"]["engineArgs"].update(max_num_seqs=8)),
    ("adapter added", lambda s: s.update(adapters=[{"name": "a", "source": "s3://adapters/a"}])),
    ("gpus per replica", lambda s: s["resources"].update(gpusPerReplica=2)),
    ("memory", lambda s: s["resources"].update(memory="32Gi")),
    ("served name", lambda s: s["model"].update(servedModelName="phi")),
    # Pod settings belong to the revision: a change is a canary in a new worker group (issue 14).
    ("tolerations", lambda s: s["resources"].update(tolerations=[])),
    ("node selector", lambda s: s["resources"].update(nodeSelector={"pool": "gpu-b"})),
    ("accelerator", lambda s: s["resources"].update(acceleratorType="NVIDIA-A100-SXM4-80GB")),
]
SAME_REVISION = [
    ("max replicas", lambda s: s["autoscaling"].update(maxReplicas=8)),
    ("queue target", lambda s: s["autoscaling"].update(targetQueueDepth=2)),
    ("traffic steps", lambda s: s["rollout"].update(steps=[{"weight": 100}])),
    ("golden prompts", lambda s: s["rollout"]["validation"].update(prompts=[])),
    ("surge", lambda s: s["rollout"].update(maxSurgeReplicas=3)),
    ("ray image", lambda s: s.update(rayImage="ghcr.io/slm-dev/slm-serving:0.2.0")),
    ("cluster upgrade approval", lambda s: s.update(clusterUpgrade={"approval": "Automatic"})),
]
LORA = "qwen2.5-lora.yaml"
ADAPTER_NEW_REVISION = [
    ("adapter added", lambda s: s["adapters"].append({"name": "c", "source": "s3://adapters/c"})),
    ("adapter removed", lambda s: s["adapters"].pop()),
    ("rank above the engines' bucket", lambda s: s["adapters"][0].update(rank=64)),
    ("source on another PVC", lambda s: s["adapters"][1].update(source="pvc://other/sql-writer")),
]
ADAPTER_SAME_REVISION = [
    ("new source", lambda s: s["adapters"][0].update(source="s3://ml-artifacts/adapters/qwen-support/v4")),
    ("new path on the same PVC", lambda s: s["adapters"][1].update(source="pvc://adapters/qwen/sql-writer-v2")),
    ("rank within the bucket", lambda s: s["adapters"][0].update(rank=8)),
]


@pytest.mark.parametrize(("what", "mutate"), ADAPTER_NEW_REVISION, ids=[c[0] for c in ADAPTER_NEW_REVISION])
def test_adapter_changes_the_engines_cannot_take_make_a_new_revision(
    what: str, mutate: Callable[[dict[str, Any]], Any]
) -> None:
    assert _spec(mutate, LORA) != _spec(example=LORA)


@pytest.mark.parametrize(("what", "mutate"), ADAPTER_SAME_REVISION, ids=[c[0] for c in ADAPTER_SAME_REVISION])
def test_a_new_adapter_version_is_an_adapter_rollout_not_a_revision(
    what: str, mutate: Callable[[dict[str, Any]], Any]
) -> None:
    assert _spec(mutate, LORA) == _spec(example=LORA)


@pytest.mark.parametrize(("what", "mutate"), NEW_REVISION, ids=[c[0] for c in NEW_REVISION])
def test_model_affecting_changes_make_a_new_revision(what: str, mutate: Callable[[dict[str, Any]], Any]) -> None:
    assert _spec(mutate) != _spec()


@pytest.mark.parametrize(("what", "mutate"), SAME_REVISION, ids=[c[0] for c in SAME_REVISION])
def test_policy_changes_keep_the_revision(what: str, mutate: Callable[[dict[str, Any]], Any]) -> None:
    assert _spec(mutate) == _spec()


def test_revision_is_short_and_deterministic() -> None:
    assert _spec() == _spec() and len(_spec()) == 10 and all(c in "0123456789abcdef" for c in _spec())


def test_spelling_out_a_default_keeps_the_revision() -> None:
    """qwen2.5-lora.yaml leaves dtype out; writing its default must not start a rollout."""
    assert "dtype" not in yaml.safe_load((EXAMPLES / "qwen2.5-lora.yaml").read_text())["spec"]["model"]
    explicit = _spec(lambda s: s["model"].update(dtype="auto"), example="qwen2.5-lora.yaml")
    assert explicit == _spec(example="qwen2.5-lora.yaml")
