"""Shadow traffic (`slm_serving.shadow`): the bounds, the texts compared, agreement per comparison, the
counts, and the router's wiring (a copy never delays or changes the user's answer).

The one stand-in is the engine the copy goes to (`send`, or `FakeEngine` of test_router for the
router's own replica): a vLLM engine cannot run in a unit test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from slm_serving.config import AnswerRules, ShadowConfig
from slm_serving.metrics import RouterMetrics
from slm_serving.protocol import Endpoint, Head
from slm_serving.shadow import (
    COPY_FAILED,
    WORST_KEPT,
    Answer,
    Shadower,
    ShadowOutcome,
    ShadowRecorder,
    TokenBucket,
    answer_text,
    copy_body,
    distance,
    normalize,
    prompt_text,
    stream_text,
)
from tests.unit.serving.test_router import TOKEN, FakeEngine, _request, _router

PARIS = AnswerRules(contains=("Paris",))


def _config(**update: Any) -> ShadowConfig:
    base: dict[str, Any] = {
        "revision": "canary",
        "app_name": "rev-canary",
        "epoch": "2026-12-03T10:00:00Z",
        "fraction": 1.0,
        "comparison": "exact",
        "max_rps": 100.0,
        "max_in_flight": 4,
        "timeout_s": 5.0,
    }
    return ShadowConfig.model_validate(base | update)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(2.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.4) is False  # 0.8 of a token back
    assert bucket.take(0.5) is True
    slow = TokenBucket(0.5, now=0.0)
    assert [slow.take(0.0), slow.take(1.0), slow.take(2.0)] == [True, False, True]


def test_copy_is_not_streamed_and_texts_are_read_from_either_shape() -> None:
    body = b'{"model": "m", "prompt": "hi", "stream": true, "stream_options": {"include_usage": true}}'
    assert json.loads(copy_body(body)) == {"model": "m", "prompt": "hi", "stream": False}
    chat = b'{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q?"}]}'
    assert (prompt_text(body), prompt_text(chat)) == ("hi", "q?")
    assert prompt_text(json.dumps({"prompt": "x" * 500}).encode()) == "x" * 200
    assert answer_text(b'{"choices": [{"text": " Paris"}]}') == " Paris"
    assert answer_text(b'{"choices": [{"message": {"role": "assistant", "content": "Oslo"}}]}') == "Oslo"
    assert answer_text(b'{"error": {"message": "bad"}}') is None
    assert answer_text(None) is None
    chunks = [
        'data: {"choices": [{"delta": {"role": "assistant"}}]}\n\n',
        'data: {"choices": [{"delta": {"content": "Li"}}]}\n\ndata: {"choices": [{"delta": {"content": "ma"}}]}\n\n',
        "data: [DONE]\n\n",
    ]
    assert stream_text(chunks) == "Lima"
    assert stream_text(['data: {"choices": [{"text": "a"}]}\n\n', 'data: {"choices": [{"text": "b"}]}\n\n']) == "ab"
    assert stream_text(["data: {not json\n\n"]) is None


@pytest.mark.parametrize(
    ("comparison", "stable", "canary", "agree"),
    [
        ("exact", " Paris.", " Paris.", True),
        ("exact", " Paris.", " paris", False),
        ("normalized", " Paris.", "paris", True),
        ("normalized", "The  capital:\nParis!", "the capital paris", True),
        ("normalized", "Paris", "Lyon", False),
        ("expectations", "It is Paris, of course", "Paris.", True),  # both pass
        ("expectations", "Lyon", "Marseille", True),  # both fail alike
        ("expectations", "Paris", "Lyon", False),
    ],
)
def test_agreement_per_comparison(comparison: str, stable: str, canary: str, agree: bool) -> None:
    assert (distance(comparison, (PARIS,), stable, canary) == 0) is agree


def test_distance_ranks_how_different_answers_are() -> None:
    assert 0 < distance("exact", (), "Paris", "Paris!") < distance("exact", (), "Paris", "xyzzy") <= 1
    rules = (PARIS, AnswerRules(regex="^\\s*[A-Z]"))
    assert distance("expectations", rules, "Paris", "paris") == 1.0  # Paris rule and capital-letter rule
    assert distance("expectations", rules, "Paris", "Lyon") == 0.5


def test_recorder_counts_pairs_errors_skips_and_keeps_the_worst() -> None:
    recorder = ShadowRecorder.start(_config(fraction=0.5, max_in_flight=3, max_rps=100.0), now=0.0)
    assert recorder.admit(0.7, now=0.0) == "unsampled"  # not counted at all
    assert [recorder.admit(0.1, now=0.0) for _ in range(4)] == ["copy"] * 3 + [ShadowOutcome.SKIPPED_IN_FLIGHT]
    assert (recorder.copies, recorder.skipped, recorder.in_flight) == (3, 1, 3)
    ok = Answer(200, " Paris", 0.1)
    assert recorder.record("q1", ok, Answer(200, " Paris", 0.2)) == ShadowOutcome.AGREED
    assert recorder.record("q2", ok, Answer(500, None, 0.05)) == ShadowOutcome.CANARY_ERROR
    user_failed = recorder.record("q3", Answer(503, None, 0.1), Answer(200, " Paris", 0.2))  # not compared
    assert user_failed == ShadowOutcome.STABLE_ERROR
    assert (recorder.pairs, recorder.agreed, recorder.canary_errors, recorder.stable_errors) == (1, 1, 1, 1)
    assert recorder.in_flight == 0 and list(recorder.latency_ms) == [(100.0, 200.0)]
    for index in range(WORST_KEPT + 2):
        assert recorder.admit(0.0, now=1.0 + index) == "copy"
        outcome = recorder.record(f"q{index}", ok, Answer(200, " Paris" + "x" * index, 0.1))
        assert outcome == (ShadowOutcome.AGREED if index == 0 else ShadowOutcome.DISAGREED)
    exported = recorder.export()
    worst = exported["worst"]
    assert isinstance(worst, list) and len(worst) == WORST_KEPT
    assert [w["prompt"] for w in worst] == ["q6", "q5", "q4", "q3", "q2"]  # most different first
    assert worst[0]["stable"] == " Paris" and worst[0]["canary"] == " Parisxxxxxx"
    assert (exported["pairs"], exported["agreed"], exported["skipped"]) == (8, 2, 1)  # q0 agreed too
    assert recorder.record("late", None, Answer(200, "x", 0.1)) == ShadowOutcome.ABANDONED  # the user went away
    assert recorder.abandoned == 1


def test_recorder_tells_the_rate_bound_from_the_in_flight_bound() -> None:
    recorder = ShadowRecorder.start(_config(fraction=1.0, max_in_flight=10, max_rps=1.0), now=0.0)
    assert [recorder.admit(0.0, now=0.0) for _ in range(2)] == ["copy", ShadowOutcome.SKIPPED_RATE]
    assert recorder.admit(0.0, now=1.0) == "copy"  # a second later the bucket has a token again
    assert (recorder.copies, recorder.skipped) == (2, 1)


class _Copies:
    """The shadowed revision's engine: answers each copy after `delay_s` (a stand-in for vLLM)."""

    def __init__(self, text: str = " Paris", delay_s: float = 0.0, status: int = 200) -> None:
        self.text, self.delay_s, self.status = text, delay_s, status
        self.bodies: list[bytes] = []
        self.cancelled = 0

    def send(self, app: str, endpoint: Endpoint, body: bytes) -> asyncio.Task[Head]:
        self.bodies.append(body)

        async def answer() -> Head:
            try:
                await asyncio.sleep(self.delay_s)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            return (self.status, json.dumps({"choices": [{"text": self.text}]}).encode(), 1, 1)

        return asyncio.ensure_future(answer())


def _run(test: Callable[[], Any]) -> Any:
    return asyncio.run(test())


async def _until(check: Callable[[dict[str, Any]], bool], shadower: Shadower, timeout_s: float = 10.0) -> None:
    """Yield to the copies' tasks until the shadower's export satisfies `check` (a loaded machine can
    take far longer than the copies' own delays)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check(json.loads(shadower.export())):
        assert asyncio.get_running_loop().time() < deadline, shadower.export()
        await asyncio.sleep(0.01)


def test_shadower_never_waits_for_the_copy_and_compares_when_both_are_in() -> None:
    async def scenario() -> dict[str, Any]:
        shadower, copies = Shadower(), _Copies(text=" Lyon", delay_s=0.05)
        shadower.configure(_config(), now=0.0)
        body = b'{"model": "m", "prompt": "Capital of France?", "stream": true}'
        pair = shadower.start("stable", "completions", body, 0.0, copies.send)
        assert pair is not None and copies.bodies == []  # the copy starts in its own task
        assert shadower.start("canary", "completions", body, 0.0, copies.send) is None  # never to itself
        pair.resolve(200, ['data: {"choices": [{"text": " Paris"}]}\n\n', "data: [DONE]\n\n"], 0.02)
        await _until(lambda shadow: shadow["pairs"] == 1, shadower)
        assert json.loads(copies.bodies[0])["stream"] is False
        return json.loads(shadower.export())

    shadow = _run(scenario)
    assert (shadow["pairs"], shadow["agreed"], shadow["revision"]) == (1, 0, "canary")
    assert shadow["worst"][0] == {
        "distance": shadow["worst"][0]["distance"],
        "prompt": "Capital of France?",
        "stable": " Paris",
        "canary": " Lyon",
    }
    assert shadow["latencyMs"][0][0] == 20.0 and shadow["latencyMs"][0][1] >= 50


def test_shadower_bounds_copies_in_flight_and_times_out_a_slow_revision() -> None:
    async def scenario() -> tuple[dict[str, Any], int]:
        counted: list[tuple[str, ShadowOutcome]] = []
        shadower, copies = Shadower(lambda *tags: counted.append(tags)), _Copies(delay_s=3600)
        shadower.configure(_config(max_in_flight=2, timeout_s=0.1), now=0.0)
        pairs = [shadower.start("stable", "completions", b'{"prompt": "q"}', 0.0, copies.send) for _ in range(3)]
        assert [p is not None for p in pairs] == [True, True, False]
        assert counted == [("canary", ShadowOutcome.SKIPPED_IN_FLIGHT)]  # counted as it is refused
        for pair in pairs:
            if pair is not None:
                pair.resolve(200, b'{"choices": [{"text": "a"}]}', 0.01)
        await _until(lambda shadow: shadow["inFlight"] == 0 and shadow["canaryErrors"] == 2, shadower)
        return json.loads(shadower.export()), copies.cancelled, counted

    shadow, cancelled, counted = _run(scenario)
    assert (shadow["copies"], shadow["skipped"], shadow["canaryErrors"], shadow["inFlight"]) == (2, 1, 2, 0)
    assert cancelled == 2  # the timed-out calls were cancelled on the engine
    assert counted[1:] == [("canary", ShadowOutcome.CANARY_ERROR)] * 2


def test_a_new_epoch_starts_afresh_and_cancels_the_last_phase_copies() -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any], int]:
        shadower, copies = Shadower(), _Copies(delay_s=3600)
        shadower.configure(_config(), now=0.0)
        assert shadower.start("stable", "completions", b'{"prompt": "q"}', 0.0, copies.send) is not None
        await asyncio.sleep(0.01)
        shadower.configure(_config(max_rps=5.0), now=0.0)  # same phase, new bounds: counts kept
        kept = json.loads(shadower.export())
        shadower.configure(_config(epoch="2026-12-03T11:00:00Z"), now=0.0)
        await asyncio.sleep(0.01)
        fresh = json.loads(shadower.export())
        shadower.configure(None, now=0.0)
        return kept, fresh | {"after": json.loads(shadower.export())}, copies.cancelled

    kept, fresh, cancelled = _run(scenario)
    assert kept["copies"] == 1 and fresh["copies"] == 0 and fresh["epoch"] == "2026-12-03T11:00:00Z"
    assert cancelled == 1 and fresh["after"] == {"revision": None}


def test_router_answers_the_user_from_the_chosen_revision_and_copies_aside() -> None:
    """The user's request goes to the local revision; the copy goes to the shadowed revision's app, here
    the same in-process engine (its name is the only thing that makes it the 'canary')."""
    engine = FakeEngine()
    shadow = _config(revision="canary", app_name="rev-local").model_dump(mode="json")
    router = _router(engine, routes={"local": 100, "canary": 0}, expose_revision=True, shadow=shadow)

    async def scenario() -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        answers = []
        for _ in range(3):
            response = await router.handle(_request("/v1/completions"))
            answers.append((response.status_code, response.headers.get("x-slm-revision"), response.body))
        await asyncio.sleep(0.05)
        user = await router.handle(_request("/slm/shadow", method="GET"))
        operator = await router.handle(_request("/slm/shadow", headers={"x-slm-pin-token": TOKEN}, method="GET"))
        samples = await router.handle(
            _request("/slm/samples?after=0", headers={"x-slm-pin-token": TOKEN}, method="GET")
        )
        assert user.status_code == 404  # operator only
        return answers, json.loads(operator.body), json.loads(samples.body)

    answers, shadow_counts, samples = asyncio.run(scenario())
    assert answers == [(200, "local", b'{"choices": [{"text": "ok"}]}')] * 3
    assert (shadow_counts["copies"], shadow_counts["pairs"], shadow_counts["agreed"]) == (3, 3, 3)
    # Copies are not user traffic: the sample window counts the three user requests only.
    assert samples["revisions"]["local"]["requests"] == 3
    assert samples["revisions"]["canary"]["requests"] == 0


class _RecordingCounter:
    """Stands in for Ray's metrics agent (the boundary the router's counters are exported through):
    keeps each increment with its tags."""

    def __init__(self) -> None:
        self.increments: list[tuple[float, dict[str, str]]] = []

    def inc(self, value: float, tags: dict[str, str]) -> None:
        self.increments.append((value, tags))


def test_router_counts_each_sampled_request_once_by_revision_and_outcome() -> None:
    """The router's own Shadower feeds `slm_router_shadow_requests_total`; tags stay bounded (a revision
    that is not live is `other`)."""
    engine = FakeEngine()
    shadow = _config(revision="canary", app_name="rev-local", max_in_flight=1).model_dump(mode="json")
    router = _router(engine, routes={"local": 100, "canary": 0}, shadow=shadow)
    counter = _RecordingCounter()
    router._metrics.shadow = counter  # type: ignore[assignment]

    async def scenario() -> None:
        for _ in range(2):
            await router.handle(_request("/v1/completions"))
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert counter.increments == [(1, {"revision": "canary", "outcome": "agreed"})] * 2
    metrics = RouterMetrics()
    metrics.shadow = counter  # type: ignore[assignment]
    metrics.set_live(["local"])
    metrics.observe_shadow("retired", ShadowOutcome.SKIPPED_RATE)
    assert counter.increments[-1] == (1, {"revision": "other", "outcome": "skipped_rate"})


def test_failed_copy_is_a_canary_error_only() -> None:
    async def scenario() -> dict[str, Any]:
        shadower = Shadower()
        shadower.configure(_config(), now=0.0)

        def broken(app: str, endpoint: Endpoint, body: bytes) -> Any:
            raise RuntimeError("no such application")

        pair = shadower.start("stable", "completions", b'{"prompt": "q"}', 0.0, broken)
        assert pair is not None
        pair.resolve(200, b'{"choices": [{"text": "a"}]}', 0.01)
        await asyncio.sleep(0.01)
        return json.loads(shadower.export())

    shadow = _run(scenario)
    assert (shadow["canaryErrors"], shadow["pairs"], shadow["completed"]) == (1, 0, 1)
    assert COPY_FAILED >= 500


def test_normalize() -> None:
    assert normalize("  \uff30aris, FRANCE!\n") == "paris france"  # a fullwidth P
