"""Golden prompts as the operator and `slm serve` run them — on the probe loop (`observer`), streamed
through the real router to a real vLLM revision, judged by the rollout gate — with a catastrophic
regex among the expectations: it is matched against the revision's real answer under RE2 and fails
that prompt, while the other prompts are judged as usual.

Uses the session's `local_serve` (no engine of its own)."""

from __future__ import annotations

import datetime
import threading

import pytest
import yaml

from slm_operator.api.models import Expectation, SLMDeploymentSpec
from slm_operator.observer import ProbeLoop, RolloutObserver
from slm_operator.rollout.actions import RunValidation
from slm_operator.rollout.gate import evaluate_validation
from slm_serving.local import LocalServe
from tests.harness.cluster import TINY
from tests.integration.serving.conftest import GOOD, PIN_TOKEN

pytestmark = pytest.mark.serving

HOSTILE = r"(?s)^(.*?){1000}\x00"
"""Backtracking (Python's `re`) tries about C(n + 1000, n) ways to cut an answer of n characters that
has no NUL into 1000 pieces before it gives up: 10^12 for n = 5, with the GIL held (measured with
{20} on 10 characters: 1.7 s, 8 times longer for every 4 more). RE2 needs one pass over the answer."""
MIN_ANSWER = 5


def test_a_catastrophic_regex_fails_its_prompt_on_a_real_answer_and_the_others_are_judged(
    local_serve: LocalServe,
) -> None:
    spec = SLMDeploymentSpec.model_validate(yaml.safe_load(TINY.read_text())["spec"])
    france = spec.rollout.validation.prompts[0].model_copy(update={"expect": Expectation(regex=r"\bParis\b")})
    hostile = france.model_copy(update={"name": "hostile", "expect": Expectation(regex=HOSTILE)})
    validation = spec.rollout.validation.model_copy(update={"prompts": [france, hostile]})
    spec = spec.model_copy(update={"rollout": spec.rollout.model_copy(update={"validation": validation})})
    finished = threading.Event()
    loop = ProbeLoop()
    try:
        observer = RolloutObserver(loop, on_result=finished.set)
        observer.run_validation(local_serve.url, spec, RunValidation(revision=GOOD, baseline=None), pin_token=PIN_TOKEN)
        assert finished.wait(180), "the validation run did not finish"
        run, _ = observer.take()
    finally:
        loop.close()
    assert run is not None
    now = datetime.datetime.now(datetime.UTC).isoformat()
    result = evaluate_validation(spec.rollout.validation, run, now)
    by_name = {r.name: r for r in result.results}
    assert by_name["france"].passed, by_name["france"]
    assert not by_name["hostile"].passed
    assert by_name["hostile"].reason == f"answer does not match regex {HOSTILE!r}"
    assert len(by_name["hostile"].answer) >= MIN_ANSWER, by_name["hostile"]  # long enough to be catastrophic
    assert (result.pass_rate, result.passed) == (0.5, False)
