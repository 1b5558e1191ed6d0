"""Gate accuracy benchmark: how often each live gate rolls back a good canary, and how often it catches a
slow one, on real Ray Serve + vLLM (CPU) with the tiny model under steady user load.

One `slm serve` stack (`demo.serving`: the same builder, router and state machine as the operator) serves
examples/tiny.yaml. Two canaries are rolled out in turn, each to its first traffic step (50 %):

* **good** — the same model with new engine settings (`max_num_seqs: 32`, as in `make demo`);
* **slow** — `tiny://slow`, the test fixture for this bench: the good model's weights, with every
  answer paced by the engine to `SLOWDOWN` (2) times the time vLLM took for it (each streamed chunk
  likewise), as a worse quantization or a bigger model would be. The slowdown is a fixed factor of the
  engine's own time at that moment, so it holds at any load; the router's own overhead is not doubled,
  so end to end it is a little under 2x (the measured median ratio is reported, `slow_median_ratio`).

The bench's spec has no golden prompts: their own latency check (against the same maxLatencyRatio) may
already roll back the slow canary before its traffic step, and this bench measures the live gate alone.

The state machine is told never to judge the step itself (`min_step_requests` out of reach), so the
canary holds at 50 % while the bench reads the router's sample window (`GET /slm/samples`, the operator's
own probe) and judges **runs**: each run starts a fresh cursor and is judged by both gates on the same
requests, as a traffic step would be:

* the **statistical gate** (`rollout.live.compare_live`, the shipped code with the operator's default
  limits: 40 requests first, decisive at 400, alpha 0.01) looks again every `--poll-s` until it says
  Pass or Fail, exactly as the operator's passes do;
* the **p95-ratio gate** of the first generation: once the canary has 40 requests, canary p95 /
  stable p95 > maxLatencyRatio fails. It gets the raw samples (kinder than the histogram buckets it
  read before: no bucket rounding).

A run is one traffic-step verdict: the validation before it is the same for both gates, so rolling out
again only to reach the next step would add engine start-ups, not evidence. maxLatencyRatio is set to
1.5 (between the good canary's ~1x and the slow one's ~2x). The machine is as loaded as it is (report
the load average beside the figures). Progress goes to stderr; the last line is one JSON object: the
counts, and under `verdicts` each run's verdicts with their figures (the statistical gate's reason, the
p95 ratio, the median ratio, the requests on each side), so that a slow canary that passed can be explained.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from slm_operator.demo import (
    ACT_TIMEOUT_S,
    EXAMPLE,
    TrafficStats,
    background,
    edit,
    generate_load,
    serving,
    wait_for_event,
    wait_settled,
)
from slm_operator.embedded import EmbeddedRollout
from slm_operator.probes import fetch_samples
from slm_operator.rollout.gate import percentile
from slm_operator.rollout.live import LiveSamples, RevisionSamples, compare_live
from slm_operator.rollout.stats import median
from slm_operator.rollout.working import DEFAULT_MIN_STEP_REQUESTS, Reason, RolloutSettings
from slm_serving.tiny_models import SLOW_SOURCE, SLOWDOWN

MAX_LATENCY_RATIO = 1.5
STEP_WEIGHT = 50
HOLD = 10**9
"""`min_step_requests` for the state machine: never reached, so it never judges the step itself."""
RATIO_GATE_REQUESTS = 40
"""The first generation's live gate judged after this many canary requests."""


@dataclass
class RunResult:
    statistical: str
    """Pass, Fail, or Inconclusive when the run's time ran out."""
    reason: str
    """The statistical gate's reason, with its figures (medians, ratio, n, p): why a slow canary passed."""
    ratio_gate: str
    p95_ratio: float | None
    """The p95-ratio gate's figure, canary p95 / stable p95 at its 40th canary request."""
    median_ratio: float | None
    canary_requests: int
    stable_requests: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _spec_copy(directory: Path) -> Path:
    document = yaml.safe_load(EXAMPLE.read_text())
    spec = document["spec"]
    held = {"weight": STEP_WEIGHT, "pauseSeconds": 0, "maxWaitSeconds": 86400}  # the bench holds the step
    spec["rollout"]["steps"] = [held, {"weight": 100, "pauseSeconds": 0}]
    spec["rollout"]["validation"]["maxLatencyRatio"] = MAX_LATENCY_RATIO
    spec["rollout"]["validation"]["prompts"] = []  # the live gate alone is measured (see above)
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _samples(rollout: EmbeddedRollout, after: int | None) -> tuple[int, dict[str, RevisionSamples]]:
    token = rollout.pin_key.token(*rollout.pin_identity())
    snapshot = asyncio.run(fetch_samples(rollout.local.url, after, pin_token=token))
    return snapshot.last, snapshot.revisions


def _ratio_gate(live: LiveSamples) -> tuple[str, float | None]:
    """The first generation's verdict and its figure (canary p95 / stable p95)."""
    canary, stable = live.canary.latency_ms, live.stable.latency_ms
    if not canary or not stable:
        return "Inconclusive", None
    ratio = percentile(canary, 95) / percentile(stable, 95)
    return ("Fail" if ratio > MAX_LATENCY_RATIO else "Pass"), round(ratio, 3)


def judge_run(rollout: EmbeddedRollout, canary: str, stable: str, *, poll_s: float, timeout_s: float) -> RunResult:
    """One traffic-step verdict by both gates on the requests answered from now on."""
    assert rollout.spec is not None
    validation = rollout.spec.rollout.validation
    limits = RolloutSettings().live_limits
    cursor, _ = _samples(rollout, None)
    ratio_verdict: tuple[str, float | None] | None = None
    deadline = time.monotonic() + timeout_s
    while True:
        time.sleep(poll_s)
        _, revisions = _samples(rollout, cursor)
        live = LiveSamples(canary, revisions.get(canary, RevisionSamples()), revisions.get(stable, RevisionSamples()))
        if ratio_verdict is None and live.canary.requests >= RATIO_GATE_REQUESTS:
            ratio_verdict = _ratio_gate(live)
        verdict = compare_live(validation, live, limits)
        done = verdict.outcome != "Inconclusive" and ratio_verdict is not None
        if done or time.monotonic() > deadline:
            ratio = (
                median(live.canary.latency_ms) / median(live.stable.latency_ms)
                if live.canary.latency_ms and live.stable.latency_ms
                else None
            )
            ratio_outcome, p95_ratio = ratio_verdict or ("Inconclusive", None)
            return RunResult(
                statistical=verdict.outcome,
                reason=verdict.reason,
                ratio_gate=ratio_outcome,
                p95_ratio=p95_ratio,
                median_ratio=round(ratio, 3) if ratio is not None else None,
                canary_requests=live.canary.requests,
                stable_requests=live.stable.requests,
            )


def hold_canary(rollout: EmbeddedRollout, path: Path, change: Callable[[dict[str, Any]], None]) -> tuple[str, str]:
    """Roll out `change` to its first traffic step and hold it there: (canary, stable)."""
    mark = len(rollout.events)
    edit(path, change)
    reasons = {Reason.STEP_STARTED.value, Reason.ROLLED_BACK.value, Reason.CANARY_FAILED.value}
    event = wait_for_event(rollout, mark, reasons, ACT_TIMEOUT_S)
    if event is None or event.reason != Reason.STEP_STARTED.value:
        raise RuntimeError(f"the canary did not reach its traffic step: {event}")
    status = rollout.status
    assert status is not None and status.canary_revision and status.stable_revision
    return status.canary_revision, status.stable_revision


def measure(
    rollout: EmbeddedRollout,
    path: Path,
    change: Callable[[dict[str, Any]], None],
    args: argparse.Namespace,
    log: Console,
) -> list[RunResult]:
    original = yaml.safe_load(path.read_text())["spec"]
    canary, stable = hold_canary(rollout, path, change)
    results: list[RunResult] = []
    for index in range(args.runs):
        result = judge_run(rollout, canary, stable, poll_s=args.poll_s, timeout_s=args.run_timeout_s)
        log.print(f"  run {index + 1}/{args.runs}: {result}")
        results.append(result)
    edit(path, lambda spec: spec.update(original))  # back to the stable's spec: the canary is dropped
    wait_settled(rollout, ACT_TIMEOUT_S)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="verdicts per canary")
    parser.add_argument("--concurrency", type=int, default=4, help="closed-loop user clients")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--poll-s", type=float, default=2.0, help="seconds between the gate's looks")
    parser.add_argument("--run-timeout-s", type=float, default=300.0)
    args = parser.parse_args()
    log = Console(stderr=True)
    started = time.monotonic()
    stats = TrafficStats()
    with tempfile.TemporaryDirectory() as workdir:
        example = _spec_copy(Path(workdir))
        with serving(example, Console(stderr=True, quiet=True), RolloutSettings(min_step_requests=HOLD)) as (
            rollout,
            path,
        ):
            load = (rollout.local.url, "tiny", stats)
            with background(
                lambda *a: generate_load(*a, concurrency=args.concurrency, max_tokens=args.max_tokens), *load
            ):
                log.rule("good canary: max_num_seqs 32")
                good = measure(rollout, path, lambda s: s["model"]["engineArgs"].update(max_num_seqs=32), args, log)
                log.rule(f"slow canary: {SLOW_SOURCE} ({SLOWDOWN:g}x the engine's time)")
                slow = measure(rollout, path, lambda s: s["model"].update(source=SLOW_SOURCE), args, log)

    def ratios(results: list[RunResult]) -> float | None:
        values = [r.median_ratio for r in results if r.median_ratio is not None]
        return round(median(values), 2) if values else None

    figures = {
        "runs": args.runs,
        "false_rollbacks": sum(r.statistical == "Fail" for r in good),
        "slow_caught": sum(r.statistical == "Fail" for r in slow),
        "false_rollbacks_ratio_gate": sum(r.ratio_gate == "Fail" for r in good),
        "slow_caught_ratio_gate": sum(r.ratio_gate == "Fail" for r in slow),
        "inconclusive_runs": sum(r.statistical == "Inconclusive" for r in good + slow),
        "good_median_ratio": ratios(good),
        "slow_median_ratio": ratios(slow),
        "slowdown": SLOWDOWN,
        "max_latency_ratio": MAX_LATENCY_RATIO,
        "min_step_requests": DEFAULT_MIN_STEP_REQUESTS,
        "user_requests_failed": stats.failed,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "seconds": round(time.monotonic() - started, 1),
        "verdicts": {"good": [r.as_json() for r in good], "slow": [r.as_json() for r in slow]},
    }
    print(json.dumps(figures))
    sys.exit(0 if stats.failed == 0 else 1)


if __name__ == "__main__":
    main()
