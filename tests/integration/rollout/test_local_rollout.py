"""Canary rollouts on real Ray Serve + real vLLM (CPU) with the tiny models, through `slm serve`'s
shell (`EmbeddedRollout`): the same builder, state machine and probes the operator uses.

Good revision → validated, stepped, promoted; bad revision (tiny://bad answers wrongly) → rolled back
before it gets user traffic, with its failing answers in status; a canary that is slow under load →
rolled back at its traffic step; an uneconomic one rolled back on cost; a shadowed good canary promoted
and a shadowed bad one rolled back unseen. Steady user traffic through the router the whole time with
zero failed requests. The tests after the demo story share one serving stack (`stack`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from slm_operator.demo import EXAMPLE, TrafficStats, background, generate_load, roll_out, serving, tell_story
from slm_operator.embedded import EmbeddedRollout
from slm_operator.rollout.decide import RolloutSettings

pytestmark = pytest.mark.serving
Stack = tuple[EmbeddedRollout, Path]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One `slm serve` of examples/tiny.yaml (one Ray, one first engine start) for the tests below: the
    demo's story first, on the file as served, then the others, each of which rolls out its canaries
    by editing the served file (`from_example`). A live step is judged after 10 requests per revision."""
    with serving(EXAMPLE, Console(quiet=True), RolloutSettings(min_step_requests=10)) as served:
        yield served


def from_example(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """An edit of the served spec that first puts back the example's model, resources and rollout
    policy, so that a test does not depend on what an earlier test left in the shared file (the
    story's rolled-back `tiny://bad`, say)."""
    example = yaml.safe_load(EXAMPLE.read_text())["spec"]

    def edit(spec: dict[str, Any]) -> None:
        spec["resources"] = deepcopy(example["resources"])
        spec["rollout"] = deepcopy(example["rollout"])
        spec["model"] = deepcopy(example["model"])
        change(spec)

    return edit


def test_good_revision_is_promoted_and_bad_one_rolled_back_under_load(stack: Stack) -> None:
    """`make demo`'s story (`run_story` is `serving` + `tell_story`), on the shared stack."""
    result = tell_story(Console(quiet=True), stack)

    print(*(f"{e.reason}: {e.message}" for e in result.events), sep="\n")  # whole, in the failure report
    assert result.good_promoted
    assert result.bad_rolled_back
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
    assert result.traffic.failed == 0, result.traffic.failures[:5]  # zero failed user requests


def test_slow_then_uneconomic_canary_rolled_back_at_a_traffic_step(stack: Stack) -> None:
    """Two canaries that pass validation (same good model, golden prompts one at a time) and fail at the
    50 % step:

    1. its engine runs one sequence at a time (`max_num_seqs: 1`): under concurrent user traffic its
       latencies are significantly above `maxLatencyRatio` (2.5) times the stable's (the rank test of
       `rollout.live`);
    2. as fast as the stable but asking two CPU cores per replica (`resources.cpu: "2"`, the stable has
       one) with `maxCostRatio: 1.5`: its cost per output token at equal traffic share reads 2x the
       stable's (`rollout.cost`, from the router's token counts), so the correct but uneconomic canary is
       rolled back on cost."""
    rollout, path = stack
    stats = TrafficStats()
    # Closed-loop clients pile up on the slower revision: most of the 12 end up queued at the canary.
    load = functools.partial(generate_load, concurrency=12, max_tokens=48)
    assert rollout.status is not None
    stable = rollout.status.stable_revision
    mark = len(rollout.events)
    with background(load, rollout.local.url, "tiny", stats):
        outcome, _ = roll_out(rollout, path, from_example(_slow))
        assert rollout.status is not None
        final = rollout.status
        cost_mark = len(rollout.events)
        cost_outcome, _ = roll_out(rollout, path, from_example(_uneconomic))
    assert rollout.status is not None
    after_cost = rollout.status

    events = rollout.events[mark:cost_mark]
    reasons = [e.reason for e in events]
    assert outcome is not None and outcome.reason == "RolledBack", reasons
    assert "traffic step 1 (50%)" in outcome.message and "latency" in outcome.message, outcome.message
    assert reasons.index("ValidationPassed") < reasons.index("TrafficStepStarted") < reasons.index("RolledBack")
    canary = next(e.message.split()[3] for e in events if e.reason == "RolloutStarted")
    assert stats.by_revision[canary] > 0, stats.by_revision  # it did get user traffic at the step
    assert final.stable_revision == stable and final.canary_revision is None
    assert [(r.name, r.weight) for r in final.revisions] == [(stable, 100)]
    assert stats.failed == 0, stats.failures[:5]
    # Its cost at the step, from the router's token counts: the same cores and model as the stable, so
    # about 1x per token at equal share (slowness alone costs nothing while no replica is added).
    cost = final.last_cost
    assert cost is not None and (cost.revision, cost.weight) == (canary, 50), cost
    assert all(c.completion_tokens > 0 and c.cost_per_million_output_tokens for c in cost.revisions), cost
    assert cost.outcome == "NotCompared" and cost.ratio is not None and 0.5 < cost.ratio < 2, cost

    # 2. The uneconomic canary: rolled back on cost alone, at its first traffic step.
    assert cost_outcome is not None and cost_outcome.reason == "RolledBack", cost_outcome
    assert "traffic step 1 (50%)" in cost_outcome.message and "maxCostRatio 1.5" in cost_outcome.message
    assert "latency" not in cost_outcome.message, cost_outcome.message  # as fast as the stable
    expensive = next(e.message.split()[3] for e in rollout.events[cost_mark:] if e.reason == "RolloutStarted")
    cost = after_cost.last_cost
    assert cost is not None and (cost.revision, cost.outcome) == (expensive, "Fail"), cost
    assert cost.ratio is not None and 1.5 < cost.ratio < 3, cost  # two cores against one: about 2x
    assert after_cost.stable_revision == stable and after_cost.canary_revision is None
    assert stats.failed == 0, stats.failures[:5]


def _two_steps(spec: dict[str, Any]) -> None:
    spec["rollout"]["steps"] = [{"weight": 50, "pauseSeconds": 60}, {"weight": 100, "pauseSeconds": 0}]


def _slow(spec: dict[str, Any]) -> None:
    """One sequence at a time, judged at a 50 % step with latencies up to 2.5x the stable's allowed."""
    _two_steps(spec)
    spec["rollout"]["validation"]["maxLatencyRatio"] = 2.5
    spec["model"]["engineArgs"]["max_num_seqs"] = 1


def _uneconomic(spec: dict[str, Any]) -> None:
    """The stable's engine settings, on two cores per replica, with a cost limit. Latency is not
    what this act is about: a two-thread engine on a loaded 2-core machine can read 2-3x slower than
    the one-thread stable (seen at load average 14), so the latency limits are wide here."""
    _two_steps(spec)
    spec["resources"]["cpu"] = "2"
    validation = spec["rollout"]["validation"]
    validation.update(maxCostRatio=1.5, maxLatencyRatio=10.0, maxTtftRatio=10.0)


def test_shadow_phase_passes_a_good_canary_and_rolls_back_a_bad_one_unseen(stack: Stack) -> None:
    """With no golden prompts (validation passes without checks) only the shadow phase stands between a
    canary and users. Live user requests are copied to the canary at 0 % and the answers compared
    (normalized text). The good canary (same weights, new engine settings) agrees and goes on to its
    traffic step; tiny://bad answers differently, fails the phase and is rolled back, and not one user
    request was answered by it (the client sees `x-slm-revision` on every answer)."""
    rollout_, path = stack
    stats = TrafficStats()
    assert rollout_.status is not None
    mark = len(rollout_.events)
    with background(generate_load, rollout_.local.url, "tiny", stats):
        good, _ = roll_out(rollout_, path, from_example(_shadowed))
        assert rollout_.status is not None
        good_shadow = rollout_.status.last_shadow
        bad_mark = len(rollout_.events)
        bad, _ = roll_out(rollout_, path, from_example(_shadowed_bad))
    assert rollout_.status is not None
    final = rollout_.status

    events = rollout_.events[mark:]
    print(*(f"{e.reason}: {e.message}" for e in events), sep="\n")  # whole, in the failure report
    assert good is not None and good.reason == "Promoted", [e.reason for e in events]
    assert good_shadow is not None and good_shadow.outcome == "Pass", good_shadow
    assert good_shadow.pairs >= 10 and good_shadow.agreement is not None and good_shadow.agreement >= 0.8
    reasons = [e.reason for e in events]
    assert reasons.index("ShadowStarted") < reasons.index("ShadowPassed") < reasons.index("Promoted")

    assert bad is not None and bad.reason == "RolledBack", [e.reason for e in rollout_.events[bad_mark:]]
    assert "shadow phase" in bad.message and "agreement" in bad.message, bad.message
    bad_revision = next(e.message.split()[3] for e in rollout_.events[bad_mark:] if e.reason == "RolloutStarted")
    shadow = final.last_shadow
    assert shadow is not None and (shadow.revision, shadow.outcome) == (bad_revision, "Fail"), shadow
    assert shadow.pairs > 0 and shadow.worst, shadow
    assert all(w.prompt.startswith("What is the capital of") and w.stable != w.canary for w in shadow.worst)
    assert "TrafficStepStarted" not in [e.reason for e in rollout_.events[bad_mark:]]
    # No user request was answered by the bad revision; none failed.
    assert bad_revision not in stats.by_revision, stats.by_revision
    assert stats.ok > 0 and stats.failed == 0, stats.failures[:5]
    assert final.canary_revision is None and len(final.revisions) == 1


def _shadowed(spec: dict[str, Any]) -> None:
    """New engine settings (the story's stable runs 32 sequences), no golden prompts, every live request
    shadowed, then straight to 100 %."""
    rollout = spec["rollout"]
    rollout["steps"] = [{"weight": 100, "pauseSeconds": 0}]
    rollout["validation"]["prompts"] = []
    rollout["shadow"] = {
        "fraction": 1.0,
        "minPairs": 10,
        "comparison": "normalized",
        "minAgreement": 0.8,
        "maxLatencyRatio": 10.0,  # CPU replicas on a shared machine: latency is not what this test is about
        "maxErrorRate": 0.2,
        "maxShadowRps": 20,
        "maxInFlight": 4,
        "timeoutSeconds": 300,
    }
    spec["model"]["engineArgs"]["max_num_seqs"] = 16


def _shadowed_bad(spec: dict[str, Any]) -> None:
    """The promoted settings, shadowed the same way, on the model that answers wrongly."""
    _shadowed(spec)
    spec["model"]["source"] = "tiny://bad"
