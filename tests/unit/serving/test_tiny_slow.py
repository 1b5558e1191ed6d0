"""The `tiny://slow` fixture: the good model's weights, every answer paced to `SLOWDOWN` times the
engine's own time. A fake clock stands in for time (no timed assertions): the test checks the waits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

from slm_serving.model_source import ensure_model_path, parse_source
from slm_serving.tiny_models import SLOW_SOURCE, SLOWDOWN, model_dir, pace, paced, slowdown


class FakeClock:
    """Time that moves only when the engine stand-in works or the pacing sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def engine_chunks(clock: FakeClock, durations: list[float]) -> AsyncIterator[str]:
    """An engine stand-in whose i-th chunk takes durations[i] seconds to produce."""
    for index, duration in enumerate(durations):
        clock.now += duration
        yield f"chunk {index}"


def test_only_the_slow_fixture_is_paced() -> None:
    assert slowdown(SLOW_SOURCE) == SLOWDOWN == 2.0
    assert slowdown("tiny://good") == slowdown("hf://org/slow") == 1.0


def test_the_slow_fixture_serves_the_good_models_weights(tmp_path: Path) -> None:
    built = model_dir("good", tmp_path)
    built.mkdir(parents=True)
    (built / "slm-tiny-model.json").write_text(json.dumps({"variant": "good"}))  # a finished build
    assert parse_source(SLOW_SOURCE).location == "slow"
    assert ensure_model_path(SLOW_SOURCE, tmp_path) == ensure_model_path("tiny://good", tmp_path) == str(built)


async def test_a_whole_answer_takes_factor_times_the_engines_time() -> None:
    clock = FakeClock()
    started = clock()
    clock.now += 0.3  # the engine's answer
    await pace(2.0, started, clock=clock, sleep=clock.sleep)
    assert [round(s, 6) for s in clock.sleeps] == [0.3]
    assert round(clock.now - started, 6) == 0.6


async def test_every_streamed_chunk_takes_factor_times_its_own_time() -> None:
    clock = FakeClock()
    started = clock()
    clock.now += 0.1  # parsing and scheduling before the stream: counted into the first chunk
    durations = [0.2, 0.05, 0.4]
    chunks = engine_chunks(clock, durations)
    arrivals = []
    async for chunk in paced(chunks, 2.0, started, clock=clock, sleep=clock.sleep):
        arrivals.append((chunk, round(clock.now - started, 6)))
        clock.now += 1.0  # the consumer's time between chunks is not the engine's: not paced
    assert [round(s, 6) for s in clock.sleeps] == [0.3, 0.05, 0.4]
    assert arrivals == [("chunk 0", 0.6), ("chunk 1", 1.7), ("chunk 2", 3.5)]
