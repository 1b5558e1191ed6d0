"""Checking one answer against a golden prompt's expectation."""

from __future__ import annotations

from typing import Any

import pytest

from slm_operator.api.models import Expectation
from slm_serving.expectations import check_answer

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name"],
}


@pytest.mark.parametrize(
    ("answer", "expect", "passed", "reason"),
    [
        ("anything", {}, True, ""),
        ("The capital is Paris.", {"contains": ["Paris"]}, True, ""),
        ("The capital is Paris.", {"contains": ["Paris", "France"]}, False, "does not contain 'France'"),
        ("paris", {"contains": ["Paris"]}, False, "does not contain 'Paris'"),
        ("Lima", {"notContains": ["Tokyo", "Oslo"]}, True, ""),
        ("Tokyo, not Lima", {"notContains": ["Tokyo"]}, False, "contains 'Tokyo'"),
        ("order 1234 shipped", {"regex": r"\b\d{4}\b"}, True, ""),
        ("order 12 shipped", {"regex": r"\b\d{4}\b"}, False, "does not match regex"),
        ("x", {"regex": "("}, False, "invalid regex"),
        ('{"name": "Ada", "age": 36}', {"jsonSchema": PERSON}, True, ""),
        ('{"age": 36}', {"jsonSchema": PERSON}, False, "at (root): 'name' is a required property"),
        ('{"name": "Ada", "age": "old"}', {"jsonSchema": PERSON}, False, "at age: 'old' is not of type 'integer'"),
        ("Sure! {name: Ada}", {"jsonSchema": PERSON}, False, "not valid JSON"),
        ("{}", {"jsonSchema": {"type": "no-such-type"}}, False, "invalid jsonSchema"),
        ("Paris", {"contains": ["Paris"], "notContains": ["Paris"]}, False, "contains 'Paris'"),
        ('{"name": "Ada"}', {"contains": ["Ada"], "regex": "^\\{", "jsonSchema": PERSON}, True, ""),
    ],
)
def test_check_answer(answer: str, expect: dict[str, Any], passed: bool, reason: str) -> None:
    check = check_answer(answer, Expectation.model_validate(expect))
    assert check.passed is passed
    assert reason in check.reason
    assert bool(check.reason) is not passed
