"""Offline validation: schema + defaulting + CEL, as the API server does it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from slm_operator.api.validation import InvalidSpecError, parse_deployment, validate_object
from slm_operator.cli import app
from tests.conftest import EXAMPLES, REPO_ROOT

INVALID = sorted((REPO_ROOT / "tests" / "fixtures" / "invalid").glob("*.yaml"))
VALID = sorted(EXAMPLES.glob("*.yaml"))
runner = CliRunner()


def _expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path} must start with '# expect: <field>: <message>'"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_examples_are_valid_and_parse(path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    assert validate_object(obj) == []
    assert parse_deployment(obj).spec.model.served_model_name


def test_cli_validates_every_example() -> None:
    result = runner.invoke(app, ["validate", *map(str, VALID)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_file_is_rejected_with_the_field_named(path: Path) -> None:
    expected = _expected(path)
    errors = [str(e) for e in validate_object(yaml.safe_load(path.read_text()))]
    assert any(e.startswith(expected) for e in errors), errors
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert expected in result.output.replace("\n", "")


def test_there_are_at_least_a_dozen_invalid_fixtures() -> None:
    assert len(INVALID) >= 12


def test_pydantic_and_schema_agree_on_invalid_input() -> None:
    """The typed model rejects what the schema rejects (same source of truth)."""
    for path in INVALID:
        obj = yaml.safe_load(path.read_text())
        with pytest.raises(InvalidSpecError):
            parse_deployment(obj)


def _tiny() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o["spec"]["model"].pop("source"), "spec.model.source"),
        (lambda o: o["spec"].update(rayVersion="latest"), "spec.rayVersion"),
        (lambda o: o["spec"]["autoscaling"].update(targetQueueDepth=0), "spec.autoscaling.targetQueueDepth"),
        (
            lambda o: o["spec"]["rollout"]["validation"]["prompts"][0].pop("prompt"),
            "spec.rollout.validation.prompts[0]",
        ),
        (lambda o: o["spec"]["rollout"]["steps"].append({"weight": 100}), "spec.rollout.steps"),
        (
            lambda o: o["spec"]["resources"].update(tolerations=[{"effect": "Sometimes"}]),
            "spec.resources.tolerations[0].effect",
        ),
    ],
)
def test_mutations_name_the_field(mutate: Any, field: str) -> None:
    obj = _tiny()
    mutate(obj)
    assert any(e.path == field for e in validate_object(obj)), validate_object(obj)


def test_defaults_are_applied_before_cel_rules() -> None:
    """An object with only the required fields passes: rollout/autoscaling defaults fill the rest."""
    obj = {
        "apiVersion": "slm.dev/v1alpha1",
        "kind": "SLMDeployment",
        "metadata": {"name": "m"},
        "spec": {"model": {"source": "hf://org/m", "servedModelName": "m"}},
    }
    assert validate_object(obj) == []
    deployment = parse_deployment(obj)
    assert [s.weight for s in deployment.spec.rollout.steps] == [10, 50, 100]
    assert deployment.spec.autoscaling.max_replicas == 1 and deployment.spec.rollout.max_surge_replicas == 1


def test_cli_reports_yaml_syntax_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    result = runner.invoke(app, ["validate", str(broken)])
    assert result.exit_code == 1 and "not valid YAML" in result.output


def test_cli_rejects_other_kinds(tmp_path: Path) -> None:
    other = tmp_path / "pod.yaml"
    other.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
    result = runner.invoke(app, ["validate", str(other)])
    assert result.exit_code == 1 and "expected SLMDeployment" in result.output
