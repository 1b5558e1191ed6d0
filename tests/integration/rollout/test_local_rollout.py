"""The whole canary story on real Ray Serve + real vLLM (CPU) with the tiny models, through `slm serve`'s
shell (`EmbeddedRollout`): the same builder, state machine and probes the operator uses.

Good revision → validated, stepped, promoted; bad revision (tiny://bad answers wrongly) → rolled back
before it gets user traffic, with its failing answers in status; steady user traffic through the router
the whole time with zero failed requests.
"""

from __future__ import annotations

import pytest
from rich.console import Console

from slm_operator.demo import run_story

pytestmark = pytest.mark.serving


def test_good_revision_is_promoted_and_bad_one_rolled_back_under_load() -> None:
    result = run_story(Console(quiet=True), min_step_requests=5)

    assert result.good_promoted, [e.reason for e in result.events]
    assert result.bad_rolled_back, [e.reason for e in result.events]
    assert result.traffic.failed == 0, result.traffic.failures[:5]
    assert result.traffic.ok > 0
    # The bad revision never served a user request: only the two good revisions appear.
    bad = [e.message.split()[3] for e in result.events if e.reason == "RolloutStarted"][-1]
    assert bad not in result.traffic.by_revision, result.traffic.by_revision
    # Its failing golden prompts are in status, with what the model answered.
    assert result.failed_prompts and all("answered" in line for line in result.failed_prompts)
    reasons = [e.reason for e in result.events]
    promoted = reasons.index("Promoted")
    assert reasons.index("ValidationPassed") < promoted
    assert "RolledBack" in reasons[promoted:] and "Promoted" not in reasons[promoted + 1 :]
