"""Does one answer meet a golden prompt's expectations? Pure; regexes run under RE2 (linear time).

Shared by the operator's validation gate (`slm_operator.rollout.gate`, with the spec's `Expectation`)
and the router's shadow comparison (`slm_serving.shadow`, with `config.AnswerRules`): anything with the
four fields below will do."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import jsonschema

from slm_serving.regex import RegexError, regex_search


class Expectations(Protocol):
    """What a correct answer looks like (the spec's `expect`)."""

    @property
    def contains(self) -> Sequence[str]: ...
    @property
    def not_contains(self) -> Sequence[str]: ...
    @property
    def regex(self) -> str | None: ...
    @property
    def json_schema(self) -> Mapping[str, object] | None: ...


@dataclass(frozen=True)
class Check:
    passed: bool
    reason: str = ""
    """Which expectation failed, in words; empty when passed."""


def check_answer(answer: str, expect: Expectations) -> Check:
    """Checks every expectation in order (contains, notContains, regex, jsonSchema); the first failure
    is the reason. An expectation that cannot be evaluated (a bad regex or schema) fails, naming why."""
    for needle in expect.contains:
        if needle not in answer:
            return Check(False, f"answer does not contain {needle!r}")
    for needle in expect.not_contains:
        if needle in answer:
            return Check(False, f"answer contains {needle!r}")
    if expect.regex is not None:
        try:
            matched = regex_search(expect.regex, answer)
        except RegexError as error:
            return Check(False, f"invalid regex {expect.regex!r}: {error}")
        if not matched:
            return Check(False, f"answer does not match regex {expect.regex!r}")
    if expect.json_schema is not None:
        return _check_json(answer, expect.json_schema)
    return Check(True)


def _check_json(answer: str, schema: Mapping[str, object]) -> Check:
    try:
        document = json.loads(answer)
    except json.JSONDecodeError as error:
        return Check(False, f"answer is not valid JSON: {error.msg} at position {error.pos}")
    try:
        jsonschema.validate(document, schema)
    except jsonschema.SchemaError as error:
        return Check(False, f"invalid jsonSchema: {error.message}")
    except jsonschema.ValidationError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return Check(False, f"answer does not match jsonSchema at {where}: {error.message}")
    return Check(True)
