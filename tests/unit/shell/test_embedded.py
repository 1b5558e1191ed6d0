"""Pure parts of the local shell."""

from __future__ import annotations

import yaml

from slm_operator.api.validation import parse_deployment
from slm_operator.embedded import fit_to_machine, observe_revisions, summary_line
from tests.conftest import EXAMPLES


def test_without_a_gpu_replicas_run_on_cpu() -> None:
    spec = parse_deployment(yaml.safe_load((EXAMPLES / "phi3-mini.yaml").read_text())).spec
    assert spec.resources.gpus_per_replica == 1
    assert fit_to_machine(spec, has_gpu=False).resources.gpus_per_replica == 0
    assert fit_to_machine(spec, has_gpu=True) == spec


def test_summary_of_nothing_yet() -> None:
    assert summary_line(None) == "Pending"


def test_observe_revisions_counts_running_engine_replicas() -> None:
    details = {
        "applications": {
            "router": {"status": "RUNNING"},
            "rev-aaa": {
                "status": "RUNNING",
                "deployments": {"LLMEngine": {"replicas": [{"state": "RUNNING"}, {"state": "STARTING"}]}},
            },
            "rev-bbb": {"status": "DEPLOYING", "deployments": {"LLMEngine": {"replicas": [{"state": "STARTING"}]}}},
        }
    }
    running, replicas = observe_revisions(details, ["aaa", "bbb", "ccc"])
    assert running == frozenset({"aaa"})
    assert replicas == {"aaa": 1, "bbb": 0, "ccc": 0}
