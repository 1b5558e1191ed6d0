"""metav1.Condition bookkeeping and RFC 3339 times. Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from slm_operator.api.models import Condition, ConditionType

ConditionStatus = Literal["True", "False", "Unknown"]


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, to the second (what Kubernetes writes)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def find_condition(conditions: list[Condition], kind: ConditionType) -> Condition | None:
    return next((c for c in conditions if c.type == kind.value), None)


def is_true(conditions: list[Condition], kind: ConditionType, reason: str | None = None) -> bool:
    """Whether the condition is True (and, if given, has this reason)."""
    found = find_condition(conditions, kind)
    return found is not None and found.status == "True" and (reason is None or found.reason == reason)


def remove_condition(conditions: list[Condition], kind: ConditionType) -> list[Condition]:
    """The list without `kind` (a condition about something the spec no longer has)."""
    return [c for c in conditions if c.type != kind.value]


def set_condition(
    conditions: list[Condition],
    kind: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int | None,
) -> list[Condition]:
    """The list with `kind` set; lastTransitionTime only moves when the status changes."""
    previous = find_condition(conditions, kind)
    transition = previous.last_transition_time if previous is not None and previous.status == status else now
    updated = Condition(
        type=kind.value,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    return sorted([*remove_condition(conditions, kind), updated], key=lambda c: _ORDER.get(c.type, len(_ORDER)))


_ORDER = {kind.value: index for index, kind in enumerate(ConditionType)}
