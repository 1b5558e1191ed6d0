"""`make demo`: the product's story on one machine, end to end, then exit.

Serve the tiny model from examples/tiny.yaml with `slm serve`'s machinery, keep user traffic flowing
through the router, roll out a good new version (validated, stepped, promoted), then a bad one
(rolled back before users see it), and print what happened. `bench/rollout.py` and the rollout
integration test run the same story and read its figures.
"""

from __future__ import annotations

import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from slm_operator.api.models import Phase
from slm_operator.embedded import EmbeddedRollout, LocalEvent, has_nvidia_gpu, print_event, summary_line
from slm_operator.rollout.decide import Reason, RolloutSettings
from slm_operator.rollout.working import DEFAULT_MIN_STEP_REQUESTS
from slm_serving.config import REVISION_HEADER
from slm_serving.local import LocalServe

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tiny.yaml"
QUESTIONS = ("France", "Japan", "Peru", "Norway", "Germany", "Italy")
ACT_TIMEOUT_S = 600.0


KEPT_FAILURES = 50
"""Failure messages a `TrafficStats` keeps (the first ones); `failed` counts them all."""
RETRY_AFTER_TRANSPORT_ERROR_S = 0.1
"""A load worker whose request got no answer waits this long before the next: no busy loop on a dead server."""


@dataclass
class TrafficStats:
    """User traffic seen by the load generator."""

    ok: int = 0
    failed: int = 0
    by_revision: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.failed += 1
        if len(self.failures) < KEPT_FAILURES:
            self.failures.append(message)


@dataclass
class StoryResult:
    good_promoted: bool
    bad_rolled_back: bool
    seconds_to_promote: float | None
    seconds_to_rollback: float | None
    traffic: TrafficStats
    events: list[LocalEvent]
    failed_prompts: list[str]
    steady_replicas: int
    """Engine replicas serving before the first rollout."""
    peak_replicas: int
    """Most engine replicas running at once during the story."""


def generate_load(
    url: str, model: str, stats: TrafficStats, stop: threading.Event, *, concurrency: int = 2, max_tokens: int = 8
) -> None:
    """Bounded, closed-loop user traffic until `stop`: each worker waits for its answer before the next.
    Every answer is `max_tokens` long (`ignore_eos`), so each request costs the engine the same."""

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=120) as client:
            while not stop.is_set():
                prompt = f"What is the capital of {rng.choice(QUESTIONS)}?"
                body = {
                    "model": model,
                    "prompt": prompt,
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    "ignore_eos": True,
                }
                try:
                    response = client.post("/v1/completions", json=body)
                except httpx.HTTPError as error:
                    stats.fail(f"{type(error).__name__}: {error}")
                    stop.wait(RETRY_AFTER_TRANSPORT_ERROR_S)
                    continue
                if response.status_code == 200:
                    stats.ok += 1
                    stats.by_revision[response.headers.get(REVISION_HEADER, "?")] += 1
                else:
                    stats.fail(f"HTTP {response.status_code}: {response.text[:200]}")

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@contextmanager
def background(target: Callable[..., None], *args: Any) -> Iterator[threading.Event]:
    """Run `target(*args, stop)` in a thread until the block ends."""
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(*args, stop), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=180)


def drive(rollout: EmbeddedRollout, stop: threading.Event) -> None:
    while not stop.is_set():
        rollout.step()
        stop.wait(1.0)


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = yaml.safe_load(path.read_text())
    change(document["spec"])
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def wait_for_event(rollout: EmbeddedRollout, since: int, reasons: set[str], timeout_s: float) -> LocalEvent | None:
    """The first event after index `since` whose reason is one of `reasons`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in rollout.events[since:]:
            if event.reason in reasons:
                return event
        time.sleep(0.5)
    return None


def wait_settled(rollout: EmbeddedRollout, timeout_s: float) -> None:
    """Until one revision serves everything (Ready, or Degraded after a rollback) and no canary is left."""
    deadline = time.monotonic() + timeout_s
    while not _settled(rollout):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not settled after {timeout_s:.0f}s: {summary_line(rollout.status)}")
        time.sleep(0.5)


def _settled(rollout: EmbeddedRollout) -> bool:
    status = rollout.status
    return (
        status is not None
        and status.phase in {Phase.READY, Phase.DEGRADED}
        and status.canary_revision is None
        and len(status.revisions) == 1
        and status.ready_replicas > 0
    )


@contextmanager
def serving(example: Path, console: Console, settings: RolloutSettings) -> Iterator[tuple[EmbeddedRollout, Path]]:
    """`slm serve` on a copy of `example` (edit the copy to roll out), driven in the background; yields
    once its first revision serves. Stops everything it started."""
    with tempfile.TemporaryDirectory() as workdir, LocalServe() as local:
        path = Path(workdir) / example.name
        path.write_text(example.read_text())
        rollout = EmbeddedRollout(
            path,
            local,
            on_event=lambda event: print_event(console, event),
            settings=settings,
            has_gpu=has_nvidia_gpu(),
        )
        with closing(rollout), background(drive, rollout):
            wait_settled(rollout, ACT_TIMEOUT_S)
            yield rollout, path


def roll_out(
    rollout: EmbeddedRollout, path: Path, change: Callable[[dict[str, Any]], None]
) -> tuple[LocalEvent | None, float]:
    """Edit the served file and wait for the rollout's outcome (Promoted, RolledBack or CanaryFailed)
    and for one revision to serve everything again: the outcome's event and the seconds it took."""
    outcome = {Reason.PROMOTED.value, Reason.ROLLED_BACK.value, Reason.CANARY_FAILED.value}
    mark, started = len(rollout.events), time.monotonic()
    edit(path, change)
    event = wait_for_event(rollout, mark, outcome, ACT_TIMEOUT_S)
    seconds = time.monotonic() - started
    wait_settled(rollout, ACT_TIMEOUT_S)
    return event, seconds


def run_story(
    console: Console, example: Path = EXAMPLE, *, min_step_requests: int = DEFAULT_MIN_STEP_REQUESTS
) -> StoryResult:
    """Serve, roll out good then bad under steady load, and report. Stops everything it started."""
    console.rule("1. serve the tiny model")
    with serving(example, console, RolloutSettings(min_step_requests=min_step_requests)) as served:
        return tell_story(console, served)


def tell_story(console: Console, served: tuple[EmbeddedRollout, Path]) -> StoryResult:
    """The story's rollouts on a `serving` stack whose file is still the example's: a good version (new
    engine settings), then a bad one (a model that answers wrongly), under steady load."""
    rollout, path = served
    assert rollout.spec is not None and rollout.status is not None
    stats = TrafficStats()
    mark = len(rollout.events)
    steady = rollout.status.ready_replicas
    console.print(summary_line(rollout.status))
    with background(generate_load, rollout.local.url, rollout.spec.model.served_model_name, stats):
        console.rule("2. roll out a good new version (new engine settings)")
        good, promote_s = roll_out(rollout, path, lambda spec: spec["model"]["engineArgs"].update(max_num_seqs=32))
        console.rule("3. roll out a bad version (a model that answers wrongly)")
        bad, rollback_s = roll_out(rollout, path, lambda spec: spec["model"].update(source="tiny://bad"))
    validation = rollout.status.last_validation if rollout.status else None
    results = validation.results if validation else []
    failed_prompts = [f"{r.name}: answered {r.answer!r} ({r.reason})" for r in results if not r.passed]
    return StoryResult(
        good_promoted=good is not None and good.reason == Reason.PROMOTED.value,
        bad_rolled_back=bad is not None and bad.reason == Reason.ROLLED_BACK.value,
        seconds_to_promote=promote_s if good else None,
        seconds_to_rollback=rollback_s if bad else None,
        traffic=stats,
        events=list(rollout.events[mark:]),
        failed_prompts=failed_prompts,
        steady_replicas=steady,
        peak_replicas=rollout.peak_replicas,
    )


def print_summary(console: Console, result: StoryResult) -> None:
    table = Table("act", "outcome", "seconds", title="slm-operator demo")
    table.add_row(
        "good version", "promoted" if result.good_promoted else "NOT promoted", _secs(result.seconds_to_promote)
    )
    table.add_row(
        "bad version", "rolled back" if result.bad_rolled_back else "NOT rolled back", _secs(result.seconds_to_rollback)
    )
    console.print(table)
    for line in result.failed_prompts:
        console.print(f"  bad version's failing prompt — {line}")
    served = ", ".join(f"{rev}: {n}" for rev, n in result.traffic.by_revision.most_common())
    console.print(f"user requests: {result.traffic.ok} answered, {result.traffic.failed} failed ({served})")
    console.print(f"engine replicas: {result.steady_replicas} steady, {result.peak_replicas} at the peak of a rollout")


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    console = Console()
    example = Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLE
    result = run_story(console, example)
    print_summary(console, result)
    success = result.good_promoted and result.bad_rolled_back and result.traffic.failed == 0
    sys.exit(0 if success else 1)


if __name__ == "__main__":
    main()
