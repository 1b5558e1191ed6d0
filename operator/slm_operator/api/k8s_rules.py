"""Kubernetes' own rules for names, label keys and values, quantities and tolerations, as pure functions.

Ported from Kubernetes v1.33: `k8s.io/apimachinery/pkg/util/validation/validation.go` (IsDNS1123Subdomain,
IsDNS1035Label, IsQualifiedName, IsValidLabelValue), `k8s.io/apimachinery/pkg/api/resource/quantity.go`
(ParseQuantity) and `pkg/apis/core/validation/validation.go` (validateTolerations). Each function returns
the API server's messages (empty when valid), so callers only add the field path.
"""

from __future__ import annotations

import re
from typing import Any

DNS1123_SUBDOMAIN_MAX = 253
DNS1123_LABEL_MAX = 63
DNS1035_LABEL_MAX = 63
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(r"^(?P<number>[+-]?(\d+(\.\d*)?|\.\d+))(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")
QUANTITY_SPLIT_REGEX = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
"""The expression quantity.go names in its error message."""


def _length_and_format_errors(value: str, max_length: int, pattern: re.Pattern[str], format_error: str) -> list[str]:
    """Kubernetes' usual pair of checks, in its order: the length, then the format."""
    errors = []
    if len(value) > max_length:
        errors.append(f"must be no more than {max_length} characters")
    if not pattern.match(value):
        errors.append(format_error)
    return errors


def dns1123_subdomain_errors(value: str) -> list[str]:
    return _length_and_format_errors(
        value,
        DNS1123_SUBDOMAIN_MAX,
        _DNS1123_SUBDOMAIN,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
        f"validation is '{_DNS1123_SUBDOMAIN.pattern[1:-1]}')",
    )


def dns1035_label_errors(value: str) -> list[str]:
    return _length_and_format_errors(
        value,
        DNS1035_LABEL_MAX,
        _DNS1035_LABEL,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
        "alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123', "
        f"regex used for validation is '{_DNS1035_LABEL.pattern[1:-1]}')",
    )


def qualified_name_errors(value: str) -> list[str]:
    """A label key, annotation key or taint key: `[prefix/]name`."""
    prefix, slash, name = value.rpartition("/")
    errors = []
    if slash and not prefix:
        errors.append("prefix part must be non-empty")
    elif slash:
        errors += [f"prefix part {e}" for e in dns1123_subdomain_errors(prefix)]
    if not name:
        errors.append("name part must be non-empty")
        return errors
    if len(name) > QUALIFIED_NAME_MAX:
        errors.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
    if not _QUALIFIED_NAME.match(name):
        errors.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
            "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            f"validation is '{_QUALIFIED_NAME.pattern[1:-1]}')"
        )
    return errors


def label_value_errors(value: str) -> list[str]:
    return _length_and_format_errors(
        value,
        LABEL_VALUE_MAX,
        _LABEL_VALUE,
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
        f"'12345', regex used for validation is '{_LABEL_VALUE.pattern[2:-2]}')",
    )


def quantity_grammar_errors(value: Any) -> list[str]:
    """Kubernetes' quantity grammar (ParseQuantity): an integer, or a decimal with an SI/binary suffix."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return ["must be a quantity (a string such as 500m or 16Gi, or an integer)"]
    if isinstance(value, str) and _QUANTITY.match(value) is None:
        return [f"quantities must match the regular expression '{QUANTITY_SPLIT_REGEX}'"]
    return []


def resource_quantity_errors(value: Any) -> list[str]:
    """A container resource quantity: the grammar, and not negative (ValidateResourceQuantityValue)."""
    errors = quantity_grammar_errors(value)
    if errors:
        return errors
    number = value if isinstance(value, int) else float(_QUANTITY.match(value)["number"])  # type: ignore[index]
    return ["must be greater than or equal to 0"] if number < 0 else []


def toleration_errors(toleration: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) pairs for one toleration, field relative to it (`key`, `operator`, …)."""
    errors: list[tuple[str, str]] = []
    key, operator = toleration.get("key") or "", toleration.get("operator") or "Equal"
    value, effect = toleration.get("value") or "", toleration.get("effect")
    if key:
        errors += [("key", f"Invalid value: {key!r}: {e}") for e in qualified_name_errors(key)]
    elif operator != "Exists":
        errors.append(
            (
                "operator",
                f"Invalid value: {operator!r}: operator must be Exists when `key` is empty, which means "
                '"match all values and all keys"',
            )
        )
    if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
        errors.append(
            ("effect", f"Invalid value: {effect!r}: effect must be 'NoExecute' when `tolerationSeconds` is set")
        )
    if operator == "Equal":
        errors += [("value", f"Invalid value: {value!r}: {e}") for e in label_value_errors(value)]
    elif operator == "Exists" and value:
        errors.append(("operator", f"Invalid value: {value!r}: value must be empty when `operator` is 'Exists'"))
    return errors
