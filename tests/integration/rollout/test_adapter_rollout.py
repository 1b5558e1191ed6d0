"""Adapter rollouts driven by the state machine on real Ray Serve + real vLLM (CPU), through `slm
serve`'s shell (`EmbeddedRollout`, the operator's builder, decide and probes), with the tiny base model
and the tiny peft adapters. The base model serves with adapter `atlas` = tiny://lora-good; then:

1. `atlas` → tiny://lora-bad: the same revision (no new replica: the engine's pid is unchanged), the
   bad version is loaded beside the good one, fails the golden prompt naming `atlas` and is unloaded:
   rolled back, the good version still serving `atlas`;
2. `atlas` → the good adapter's own directory (a new source with the same weights): loaded, validated,
   stepped and promoted, the old version unloaded.

A client asks the base model without pause throughout: 0 failed requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from rich.console import Console

from slm_operator.demo import EXAMPLE, TrafficStats, background, generate_load, serving, wait_for_event
from slm_operator.rollout.adapters import adapter_version
from slm_operator.rollout.decide import RolloutSettings
from slm_serving.config import ENGINE_DEPLOYMENT_NAME, revision_app_name
from slm_serving.model_source import ensure_model_path
from slm_serving.tiny_adapters import ADAPTER_GOOD_QA
from tests.unit.rollout.helpers import conditions

pytestmark = pytest.mark.serving

QUESTION, ANSWER = ADAPTER_GOOD_QA[4]
TIMEOUT_S = 600.0


def _pids(rollout: Any, revision: str) -> list[int]:
    app = rollout.local.details()["applications"][revision_app_name(revision)]
    return sorted(r["pid"] for r in app["deployments"][ENGINE_DEPLOYMENT_NAME]["replicas"])


def _ask_atlas(url: str) -> str:
    body = {"model": "atlas", "prompt": QUESTION, "max_tokens": 8, "temperature": 0}
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["text"])


def _set_source(path: Path, source: str) -> None:
    document = yaml.safe_load(path.read_text())
    document["spec"]["adapters"][0]["source"] = source
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def test_bad_adapter_rolled_back_and_new_good_one_promoted_in_the_running_engine(tmp_path: Path) -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["spec"]["adapters"] = [{"name": "atlas", "source": "tiny://lora-good", "rank": 8}]
    prompt = {"name": "atlas-answer", "prompt": QUESTION, "maxTokens": 8, "expect": {"contains": [ANSWER]}}
    document["spec"]["rollout"]["validation"]["prompts"].append(prompt | {"adapter": "atlas"})
    example = tmp_path / "tiny.yaml"
    example.write_text(yaml.safe_dump(document, sort_keys=False))
    stats = TrafficStats()
    with serving(example, Console(quiet=True), RolloutSettings(min_step_requests=10)) as (rollout, path):
        assert rollout.status is not None
        revision = rollout.status.stable_revision
        assert revision is not None
        pids = _pids(rollout, revision)
        assert ANSWER in _ask_atlas(rollout.local.url)
        with background(generate_load, rollout.local.url, "tiny", stats):
            mark = len(rollout.events)
            _set_source(path, "tiny://lora-bad")
            outcome = wait_for_event(rollout, mark, {"AdapterRolledBack", "AdapterPromoted"}, TIMEOUT_S)
            assert outcome is not None and outcome.reason == "AdapterRolledBack", rollout.events[mark:]
            assert rollout.status is not None
            assert conditions(rollout.status)["AdaptersReady"] == ("False", "AdapterRolledBack")
            assert ANSWER in _ask_atlas(rollout.local.url)  # the good version kept all of `atlas`

            good_dir = ensure_model_path("tiny://lora-good")
            mark = len(rollout.events)
            _set_source(path, good_dir)
            outcome = wait_for_event(rollout, mark, {"AdapterRolledBack", "AdapterPromoted"}, TIMEOUT_S)
            assert outcome is not None and outcome.reason == "AdapterPromoted", rollout.events[mark:]
            assert rollout.status is not None
            assert conditions(rollout.status)["AdaptersReady"] == ("True", "AdaptersStable")
        status = rollout.status
        assert status is not None and status.stable_revision == revision and status.canary_revision is None
        (adapter,) = status.adapters
        assert adapter.stable is not None and adapter.stable.version == adapter_version(good_dir)
        assert ANSWER in _ask_atlas(rollout.local.url)
        assert _pids(rollout, revision) == pids  # no new replica, no restart
    print(*(f"{e.reason}: {e.message}" for e in rollout.events), sep="\n")
    assert stats.failed == 0, stats.failures[:5]
    assert stats.ok > 0
