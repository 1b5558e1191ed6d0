"""Pure parts of the local shell."""

from __future__ import annotations

import yaml

from slm_operator.api.validation import parse_deployment
from slm_operator.embedded import fit_to_machine, summary_line
from tests.conftest import EXAMPLES


def test_without_a_gpu_replicas_run_on_cpu() -> None:
    spec = parse_deployment(yaml.safe_load((EXAMPLES / "phi3-mini.yaml").read_text())).spec
    assert spec.resources.gpus_per_replica == 1
    assert fit_to_machine(spec, has_gpu=False).resources.gpus_per_replica == 0
    assert fit_to_machine(spec, has_gpu=True).resources == spec.resources


def test_local_answers_name_the_revision_that_served() -> None:
    spec = parse_deployment(yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())).spec
    assert not spec.router.expose_revision
    local = fit_to_machine(spec, has_gpu=False)
    assert local.router.expose_revision
    assert local.model_copy(update={"router": spec.router}) == spec  # nothing else changes


def test_summary_of_nothing_yet() -> None:
    assert summary_line(None) == "Pending"
