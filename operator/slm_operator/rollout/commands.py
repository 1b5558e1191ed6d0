"""The manual rollout command annotation (`slm.dev/rollout-command`), parsed."""

from __future__ import annotations

from enum import StrEnum


class RolloutCommand(StrEnum):
    """What a person can ask of a running rollout (the verbs of Argo Rollouts)."""

    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ABORT = "abort"


class InvalidCommandError(ValueError):
    """The annotation holds something other than a known command."""


def parse_rollout_command(value: str | None) -> RolloutCommand | None:
    """The command an annotation value names; None when absent or blank.

    Case and surrounding whitespace are ignored (`kubectl annotate ... slm.dev/rollout-command=Pause`).
    """
    if value is None or not value.strip():
        return None
    try:
        return RolloutCommand(value.strip().lower())
    except ValueError:
        allowed = ", ".join(c.value for c in RolloutCommand)
        raise InvalidCommandError(f"unknown rollout command {value!r}: use one of {allowed}") from None
