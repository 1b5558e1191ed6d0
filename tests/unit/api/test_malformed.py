"""The malformed-object table against `validate_object` and `slm validate`; Kubernetes' own rules."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from slm_operator.api import k8s_rules
from slm_operator.api.checks import MAX_NAME_LENGTH, source_problem
from slm_operator.api.models import SLMDeployment
from slm_operator.api.validation import parse_deployment, validate_object
from slm_operator.cli import app
from slm_serving.expectations import check_answer
from tests.fixtures.malformed import BASE, TABLE, Malformed

runner = CliRunner()


def test_the_base_object_is_valid() -> None:
    assert validate_object(BASE) == []


def test_the_table_is_large_enough() -> None:
    assert len(TABLE) >= 40
    assert len({m.id for m in TABLE}) == len(TABLE)


@pytest.mark.parametrize("case", TABLE, ids=lambda m: m.id)
def test_every_error_is_reported_with_its_field_path(case: Malformed) -> None:
    assert tuple(e.path for e in validate_object(case.build())) == case.paths


@pytest.mark.parametrize("case", TABLE, ids=lambda m: m.id)
def test_slm_validate_prints_the_same_errors(case: Malformed, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(case.build()))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("✗")]
    assert [line.split(": ", 2)[1] for line in lines] == list(case.paths)


def test_a_wrong_version_is_reported_as_kubectl_does() -> None:
    obj = dict(copy.deepcopy(BASE), apiVersion="slm.dev/v9")
    [error] = validate_object(obj)
    assert error.message.startswith('no matches for kind "SLMDeployment" in version "slm.dev/v9"')


def test_a_missing_field_and_a_cel_rule_are_both_reported() -> None:
    obj = copy.deepcopy(BASE)
    del obj["spec"]["model"]["source"]
    obj["spec"]["autoscaling"]["minReplicas"] = 3
    assert [str(e) for e in validate_object(obj)] == [
        "spec.model.source: Required value",
        "spec.autoscaling.minReplicas: minReplicas must not exceed maxReplicas",
    ]


def test_served_model_name_defaults_to_the_object_name() -> None:
    deployment = parse_deployment(copy.deepcopy(BASE))
    assert deployment.spec.model.served_model_name == "chat"
    explicit = copy.deepcopy(BASE)
    explicit["spec"]["model"]["servedModelName"] = "other"
    assert parse_deployment(explicit).spec.model.served_model_name == "other"


def test_the_crd_explains_the_served_model_name_default() -> None:
    from slm_operator.api.crd import build_openapi_schema

    field = build_openapi_schema()["properties"]["spec"]["properties"]["model"]["properties"]["servedModelName"]
    assert "Defaults to metadata.name" in field["description"] and "default" not in field


def test_the_longest_allowed_name_fits_every_derived_name() -> None:
    name = "a" * MAX_NAME_LENGTH
    assert validate_object(dict(copy.deepcopy(BASE), metadata={"name": name})) == []
    for derived in (f"{name}-xxxxx", f"{name}-xxxxx-serve-svc", f"{name}-xxxxx-head-svc", f"{name}-serve-svc"):
        assert not k8s_rules.dns1035_label_errors(derived), derived


def test_trust_remote_code_with_the_opt_in_is_accepted() -> None:
    obj = copy.deepcopy(BASE)
    obj["spec"]["model"]["engineArgs"]["trust_remote_code"] = True
    obj["spec"]["model"]["trustRemoteCode"] = True
    assert validate_object(obj) == []


def test_file_sources_are_for_slm_serve_only() -> None:
    obj = copy.deepcopy(BASE)
    obj["spec"]["model"]["source"] = "file:///models/m"
    assert [e.path for e in validate_object(obj)] == ["spec.model.source"]
    assert validate_object(obj, local=True) == []
    assert source_problem("./models/../m", local=True) is not None


@pytest.mark.parametrize(
    ("source", "ok"),
    [
        ("hf://Qwen/Qwen2.5-0.5B-Instruct", True),
        ("s3://my-bucket/models/m", True),
        ("gs://my-bucket/m", True),
        ("pvc://models", True),
        ("pvc://models/qwen/v1", True),
        ("tiny://good", True),
        ("pvc://Models/m", False),
        ("s3://ab/m", False),
        ("hf://org/name/", False),
        ("gs://user@bucket/m", False),
        ("hf://org/na me", False),
    ],
)
def test_sources(source: str, ok: bool) -> None:
    assert (source_problem(source) is None) == ok, source_problem(source)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("4", True),
        (4, True),
        ("500m", True),
        ("16Gi", True),
        ("1.5", True),
        ("1e3", True),
        (".5", True),
        ("16GB", False),
        ("lots", False),
        ("1Ki5", False),
        ("", False),
        ("-1", False),
        (-1, False),
        (True, False),
    ],
)
def test_quantities_follow_kubernetes_grammar(value: object, ok: bool) -> None:
    assert (k8s_rules.resource_quantity_errors(value) == []) == ok


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("nvidia.com/gpu.product", True),
        ("zone", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("bad key!", False),
        ("/name", False),
        ("Example.com/name", False),
        ("example.com/", False),
    ],
)
def test_label_keys_follow_kubernetes_rules(key: str, ok: bool) -> None:
    assert (k8s_rules.qualified_name_errors(key) == []) == ok


def test_empty_key_with_equal_is_invalid_as_in_kubernetes() -> None:
    assert [field for field, _ in k8s_rules.toleration_errors({"operator": "Equal"})] == ["operator"]
    assert k8s_rules.toleration_errors({"operator": "Exists"}) == []  # Kubernetes allows it; our check does not


@pytest.mark.timeout(60)
def test_a_catastrophic_regex_runs_in_linear_time() -> None:
    """`([a-z]+)+$` against a 40-character answer never returns under Python's `re`; RE2 is linear."""
    obj = copy.deepcopy(BASE)
    obj["spec"]["rollout"]["validation"]["prompts"][0]["expect"]["regex"] = "([a-z]+)+$"
    deployment = SLMDeployment.model_validate(obj)
    expect = deployment.spec.rollout.validation.prompts[0].expect
    assert not check_answer("a" * 40 + "!", expect).passed  # Python's re: hours (the timeout fails it)
    assert check_answer("a" * 40, expect).passed
