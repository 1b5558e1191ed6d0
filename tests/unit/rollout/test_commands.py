"""Parsing the `slm.dev/rollout-command` annotation."""

from __future__ import annotations

import pytest

from slm_operator.rollout.commands import InvalidCommandError, RolloutCommand, parse_rollout_command


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("pause", RolloutCommand.PAUSE),
        ("resume", RolloutCommand.RESUME),
        ("promote", RolloutCommand.PROMOTE),
        ("abort", RolloutCommand.ABORT),
        (" Promote\n", RolloutCommand.PROMOTE),
        ("ABORT", RolloutCommand.ABORT),
    ],
)
def test_parse(value: str | None, expected: RolloutCommand | None) -> None:
    assert parse_rollout_command(value) is expected


@pytest.mark.parametrize("value", ["retry", "promote-full", "pause now", "0"])
def test_unknown_commands_are_rejected_with_the_choices(value: str) -> None:
    with pytest.raises(InvalidCommandError, match="pause, resume, promote, abort"):
        parse_rollout_command(value)
