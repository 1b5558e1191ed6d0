"""Pure parts of the local shell."""

from __future__ import annotations

import os
import signal

import pytest
import yaml

from slm_operator.api.models import (
    AdapterPhase,
    AdapterRolloutStatus,
    AdapterVersionStatus,
    CostComparison,
    ShadowResult,
    SLMDeploymentStatus,
)
from slm_operator.api.validation import parse_deployment
from slm_operator.embedded import StopSignals, _served, fit_to_machine, start_gave_up, summary_line
from slm_operator.rollout.decide import Observation, decide
from slm_operator.rollout.start_failure import StartFailure
from tests.conftest import EXAMPLES
from tests.unit.rollout import states
from tests.unit.rollout.helpers import REV, SETTINGS, at
from tests.unit.rollout.helpers import spec as tiny_spec


def test_without_a_gpu_replicas_run_on_cpu() -> None:
    spec = parse_deployment(yaml.safe_load((EXAMPLES / "phi3-mini.yaml").read_text())).spec
    assert spec.resources.gpus_per_replica == 1
    assert fit_to_machine(spec, has_gpu=False).resources.gpus_per_replica == 0
    assert fit_to_machine(spec, has_gpu=True).resources == spec.resources


def test_local_answers_name_the_revision_that_served() -> None:
    spec = parse_deployment(yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())).spec
    assert not spec.router.expose_revision
    local = fit_to_machine(spec, has_gpu=False)
    assert local.router.expose_revision
    assert local.model_copy(update={"router": spec.router}) == spec  # nothing else changes


def test_summary_of_nothing_yet() -> None:
    assert summary_line(None) == "Pending"


def test_the_summary_shows_the_rollouts_cost_per_million_output_tokens() -> None:
    """`slm serve` prints what status.lastCost holds while its canary is live."""
    figures = {"accelerator": "cpu", "unitsPerReplica": 1, "unitHourPrice": 0.04, "acceleratorSeconds": 60,
               "requests": 40, "promptTokens": 9, "completionTokens": 400, "cost": 0.1}  # fmt: skip
    cost = CostComparison.model_validate(
        {
            "revision": "bbb", "step": 0, "weight": 20, "since": "2026-11-01T12:00:00Z",
            "time": "2026-11-01T12:01:00Z", "outcome": "Fail", "ratio": 2.0,
            "revisions": [
                {"revision": "bbb", "role": "canary", "costPerMillionOutputTokens": 250.0, **figures},
                {"revision": "aaa", "role": "stable", "costPerMillionOutputTokens": 31.25, **figures},
            ],
        }
    )  # fmt: skip
    status = SLMDeploymentStatus(stable_revision="aaa", canary_revision="bbb", last_cost=cost, message="step 1")
    assert summary_line(status).splitlines()[1] == (
        "  cost per million output tokens: canary 250, stable 31.25; ratio 2.00x (Fail)"
    )
    assert len(summary_line(status.model_copy(update={"canary_revision": None})).splitlines()) == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_the_same_way_and_a_second_one_cannot_cut_the_shutdown_short(signum: int) -> None:
    signals = StopSignals()
    previous = signal.getsignal(signum)
    signals.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)
        os.kill(os.getpid(), signal.SIGTERM)  # while shutting down: ignored
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.received == signum
    finally:
        signals.restore()
    assert signal.getsignal(signum) == previous


def test_slm_serve_gives_up_only_when_serve_gave_up_on_the_first_revision() -> None:
    a = REV["a"]
    failing = Observation(start_failures={a: StartFailure("ValueError: no model", final=False, retries_left=2)})
    first = decide(tiny_spec("a"), states.deploying(), failing, generation=1, now=at(1), settings=SETTINGS)
    assert start_gave_up(first.status) is None and start_gave_up(None) is None
    gave_up = Observation(start_failures={a: StartFailure("ValueError: no model", final=True)})
    failed = decide(tiny_spec("a"), first.status, gave_up, generation=1, now=at(2), settings=SETTINGS)
    reason = start_gave_up(failed.status)
    assert reason is not None and "ValueError: no model" in reason and "gave up" in reason


def test_the_summary_shows_the_shadow_phase_while_its_canary_is_live() -> None:
    shadow = ShadowResult(
        revision="bbb",
        since="2026-11-01T12:00:00Z",
        time="2026-11-01T12:01:00Z",
        outcome="Inconclusive",
        comparison="normalized",
        pairs=12,
        agreed=9,
        agreement=0.75,
        skipped=3,
    )
    status = SLMDeploymentStatus(stable_revision="aaa", canary_revision="bbb", last_shadow=shadow, message="m")
    assert summary_line(status).splitlines()[1] == (
        "  shadow: 12 pairs, 75% agree, 0 canary errors, 3 skipped (Inconclusive)"
    )
    assert len(summary_line(status.model_copy(update={"canary_revision": None})).splitlines()) == 1


def test_an_adapter_rollout_changes_what_the_local_serve_must_run() -> None:
    """A new adapter version in `status.adapters` (the revisions' weights unchanged) is re-applied."""
    stable = AdapterVersionStatus(version="v1", source="tiny://lora-good", weight=100)
    serving = AdapterRolloutStatus(name="atlas", phase=AdapterPhase.STABLE, stable=stable, since="t0")
    loading = serving.model_copy(
        update={"phase": AdapterPhase.LOADING, "canary": AdapterVersionStatus(version="v2", source="x", weight=0)}
    )
    before = SLMDeploymentStatus(adapters=[serving])
    after = SLMDeploymentStatus(adapters=[loading])
    assert _served(tiny_spec(), before) != _served(tiny_spec(), after)
    assert _served(tiny_spec(), after) == _served(tiny_spec(), after.model_copy(update={"adapters": [
        loading.model_copy(update={"phase": AdapterPhase.VALIDATING, "since": "t1"})
    ]}))  # fmt: skip
