"""Shadow traffic: copies of sampled user requests sent to a revision nobody is served by, and the
comparison of its answers with the ones users got.

While the operator's shadow phase runs (`RouterUserConfig.shadow`), the router picks each user's
revision as always; for a sampled share of the requests (`fraction`) it also starts a copy to the
shadowed revision, in a task of its own, and answers the user from the chosen revision without ever
awaiting the copy. The copy is non-streaming (`"stream": false`) whatever the user asked for; the
user's own answer (whole, or the chunks of its stream) is handed to the task when it is complete.

Bounded, so a slow canary cannot slow the stable: at most `max_rps` copies start per second (a token
bucket) and at most `max_in_flight` are unanswered at once; a sampled request over either bound is
not copied (counted as `skipped`). A copy, and the wait for the user's answer, ends after `timeout_s`.

Per pair the router records whether the answers agree (`comparison`: `exact`, `normalized` text, or
`expectations` — both pass or fail each golden prompt's rules alike), both latencies and errors, in
`ShadowRecorder`: counters since the phase began (its `epoch`), the latest `LATENCY_WINDOW` latency
pairs and the `WORST_KEPT` most different answers (prompt and both answers, truncated). The operator
reads them at `GET /slm/shadow` (with its pin token). Each sampled request's `ShadowOutcome` also goes
to the router's Prometheus counter (`RouterMetrics.observe_shadow`), for dashboards. Shadow answers are
never returned to anyone and never enter the user metrics or the sample window (`slm_serving.samples`).
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
import re
import time
import unicodedata
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal

from slm_serving.config import AnswerRules, ShadowConfig
from slm_serving.expectations import check_answer
from slm_serving.protocol import Endpoint, Head

logger = logging.getLogger("ray.serve")

SHADOW_PATH: Final = "/slm/shadow"
TEXT_LIMIT: Final = 200
"""Characters of a prompt or an answer kept in a disagreement (status objects must stay small)."""
WORST_KEPT: Final = 5
LATENCY_WINDOW: Final = 1024
"""Latency pairs kept: the most recent ones."""
COPY_FAILED: Final = 599
"""Status recorded for a copy that got no answer (timeout, transport or Serve error)."""


# ---------------------------------------------------------------- pure: bounds, texts, agreement


class TokenBucket:
    """At most `rate` takes per second on average, bursts up to max(1, rate). `now`: monotonic seconds."""

    def __init__(self, rate: float, now: float) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._at = now

    def take(self, now: float) -> bool:
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def copy_body(body: bytes) -> bytes:
    """The request as the shadowed revision gets it: the same, but not streamed."""
    data = json.loads(body)
    data["stream"] = False
    data.pop("stream_options", None)
    return json.dumps(data).encode()


def prompt_text(body: bytes) -> str:
    """What the user asked, for a disagreement's sample: the prompt, or the last message's content."""
    data = json.loads(body)
    prompt = data.get("prompt")
    if prompt is None and isinstance(data.get("messages"), list) and data["messages"]:
        last = data["messages"][-1]
        prompt = last.get("content") if isinstance(last, dict) else None
    return (prompt if isinstance(prompt, str) else json.dumps(prompt))[:TEXT_LIMIT]


def answer_text(payload: bytes | None) -> str | None:
    """The text of a whole OpenAI answer (first choice); None when it has none."""
    if payload is None:
        return None
    try:
        choice = (json.loads(payload).get("choices") or [None])[0]
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    if not isinstance(choice, dict):
        return None
    text = choice.get("text")
    if text is None and isinstance(choice.get("message"), dict):
        text = choice["message"].get("content")
    return text if isinstance(text, str) else None


def stream_text(chunks: Sequence[str]) -> str | None:
    """The text of a streamed answer from its SSE chunks (first choice); None if a chunk is unreadable."""
    pieces: list[str] = []
    for chunk in chunks:
        for line in chunk.splitlines():
            data = line.removeprefix("data:").strip() if line.startswith("data:") else ""
            if not data or data == "[DONE]":
                continue
            try:
                choice = (json.loads(data).get("choices") or [{}])[0]
            except (json.JSONDecodeError, AttributeError):
                return None
            if isinstance(choice, dict):
                delta = choice.get("delta")
                content = delta.get("content") if isinstance(delta, dict) else None
                pieces.append(str(choice.get("text") or content or ""))
    return "".join(pieces)


_NOT_WORD = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """Text as `normalized` compares it: Unicode NFKC, case-folded, punctuation and runs of whitespace
    turned into single spaces, trimmed."""
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def distance(comparison: str, rules: Sequence[AnswerRules], stable: str, canary: str) -> float:
    """How far apart two answers are: 0 when they agree, up to 1. `exact` / `normalized`: 1 minus
    difflib's similarity of the (normalized) texts, at least 0.001 for any difference; `expectations`:
    the share of rules that one answer passes and the other fails."""
    if comparison == "expectations":
        if not rules:
            return 0.0
        split = sum(check_answer(stable, r).passed != check_answer(canary, r).passed for r in rules)
        return split / len(rules)
    if comparison == "normalized":
        stable, canary = normalize(stable), normalize(canary)
    if stable == canary:
        return 0.0
    similarity = difflib.SequenceMatcher(None, stable[:TEXT_LIMIT], canary[:TEXT_LIMIT]).ratio()
    return round(max(0.001, 1 - similarity), 3)


@dataclass(frozen=True)
class Answer:
    """One side of a pair: its HTTP status, its text (None: none readable) and latency."""

    status: int
    text: str | None
    latency_s: float

    @property
    def ok(self) -> bool:
        return self.status < 400 and self.text is not None


class ShadowOutcome(StrEnum):
    """What became of one sampled request: the `outcome` tag of `slm_router_shadow_requests_total`."""

    AGREED = "agreed"
    """A pair compared: both answered, the answers agree."""
    DISAGREED = "disagreed"
    """A pair compared: both answered, the answers differ."""
    CANARY_ERROR = "canary_error"
    """The copy failed (an HTTP error, no readable answer, a timeout)."""
    STABLE_ERROR = "stable_error"
    """The user's own answer failed: nothing to compare with."""
    ABANDONED = "abandoned"
    """The user's answer never came within the copy's timeout (the client went away)."""
    SKIPPED_RATE = "skipped_rate"
    """Not copied: over max_rps."""
    SKIPPED_IN_FLIGHT = "skipped_in_flight"
    """Not copied: max_in_flight copies unanswered."""


Admission = Literal["copy", "unsampled"] | Literal[ShadowOutcome.SKIPPED_RATE, ShadowOutcome.SKIPPED_IN_FLIGHT]
"""`ShadowRecorder.admit`'s answer: copy it, not sampled (not counted at all), or skipped by a bound."""


@dataclass(frozen=True)
class Disagreement:
    distance: float
    prompt: str
    stable: str
    canary: str


@dataclass
class ShadowRecorder:
    """The counts of one shadow phase (one `epoch`). Pure: `now` is passed in; the event loop owns it."""

    config: ShadowConfig
    bucket: TokenBucket
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)
    copies: int = 0
    """Copies started."""
    completed: int = 0
    """Copies the shadowed revision answered or failed (the error rate's denominator)."""
    canary_errors: int = 0
    stable_errors: int = 0
    """Pairs whose user answer failed: not compared."""
    pairs: int = 0
    """Pairs compared: both answered."""
    agreed: int = 0
    skipped: int = 0
    """Sampled requests not copied: over max_rps or max_in_flight."""
    abandoned: int = 0
    """Copies whose user answer did not arrive in time (the client went away)."""
    in_flight: int = 0
    latency_ms: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    """(stable, canary) of the latest compared pairs."""
    worst: list[Disagreement] = field(default_factory=list)

    @classmethod
    def start(cls, config: ShadowConfig, now: float) -> ShadowRecorder:
        return cls(config, TokenBucket(config.max_rps, now))

    def admit(self, draw: float, now: float) -> Admission:
        """Copy this request? `draw` uniform in [0, 1): sampled at `fraction`, then within the bounds."""
        if draw >= self.config.fraction:
            return "unsampled"
        if self.in_flight >= self.config.max_in_flight:
            self.skipped += 1
            return ShadowOutcome.SKIPPED_IN_FLIGHT
        if not self.bucket.take(now):
            self.skipped += 1
            return ShadowOutcome.SKIPPED_RATE
        self.copies += 1
        self.in_flight += 1
        return "copy"

    def record(self, prompt: str, stable: Answer | None, canary: Answer) -> ShadowOutcome:
        """A finished copy (`stable` None: the user's answer never came). A copy that failed counts as a
        canary error even when its user's answer failed or never came; its outcome is then the latter."""
        self.in_flight -= 1
        self.completed += 1
        if not canary.ok:
            self.canary_errors += 1
        if stable is None:
            self.abandoned += 1
            return ShadowOutcome.ABANDONED
        if not stable.ok:
            self.stable_errors += 1
            return ShadowOutcome.STABLE_ERROR
        if not canary.ok:
            return ShadowOutcome.CANARY_ERROR
        assert stable.text is not None and canary.text is not None
        self.pairs += 1
        self.latency_ms.append((round(stable.latency_s * 1000, 2), round(canary.latency_s * 1000, 2)))
        apart = distance(self.config.comparison, self.config.rules, stable.text, canary.text)
        if apart == 0:
            self.agreed += 1
            return ShadowOutcome.AGREED
        found = Disagreement(apart, prompt, stable.text[:TEXT_LIMIT], canary.text[:TEXT_LIMIT])
        self.worst = sorted([*self.worst, found], key=lambda d: -d.distance)[:WORST_KEPT]
        return ShadowOutcome.DISAGREED

    def export(self) -> dict[str, object]:
        return {
            "instance": self.instance,
            "revision": self.config.revision,
            "epoch": self.config.epoch,
            "comparison": self.config.comparison,
            "copies": self.copies,
            "completed": self.completed,
            "pairs": self.pairs,
            "agreed": self.agreed,
            "canaryErrors": self.canary_errors,
            "stableErrors": self.stable_errors,
            "skipped": self.skipped,
            "abandoned": self.abandoned,
            "inFlight": self.in_flight,
            "latencyMs": [list(pair) for pair in self.latency_ms],
            "worst": [
                {"distance": d.distance, "prompt": d.prompt, "stable": d.stable, "canary": d.canary} for d in self.worst
            ],
        }


# ---------------------------------------------------------------- the copies, on the router's event loop


Send = Callable[[str, Endpoint, bytes], Any]
"""(app name, endpoint, body) → an awaitable `Head` with `cancel()`: a Serve handle's response, or a task."""
Count = Callable[[str, ShadowOutcome], None]
"""(shadowed revision, outcome) of each sampled request: the router's Prometheus counter."""


def _not_counted(revision: str, outcome: ShadowOutcome) -> None:
    return None


class ShadowPair:
    """One copied request: the router hands over the user's answer with `resolve` when it is complete."""

    def __init__(self) -> None:
        self._stable: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

    def resolve(self, status: int, answer: bytes | Sequence[str] | None, latency_s: float) -> None:
        """The user's answer: a whole JSON body, a stream's chunks, or None (an error without one)."""
        if self._stable.done():
            return
        text = answer_text(answer) if isinstance(answer, bytes | None) else stream_text(answer)
        self._stable.set_result(Answer(status, text, latency_s))

    async def stable(self, timeout_s: float) -> Answer | None:
        """The user's answer, once resolved; None if it did not come within `timeout_s`."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._stable), max(0.0, timeout_s))
        except TimeoutError:
            return None


class Shadower:
    """The router's shadow traffic: configured with `RouterUserConfig.shadow`, started per request."""

    def __init__(self, count: Count = _not_counted) -> None:
        self._recorder: ShadowRecorder | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._count = count

    def configure(self, config: ShadowConfig | None, now: float) -> None:
        """A new phase (another revision or epoch) starts its counts afresh and cancels the copies of
        the last one; the same phase with new bounds keeps its counts."""
        current = self._recorder
        if (
            config is None
            or current is None
            or (config.revision, config.epoch)
            != (
                current.config.revision,
                current.config.epoch,
            )
        ):
            for task in self._tasks:
                task.cancel()
            self._recorder = ShadowRecorder.start(config, now) if config is not None else None
        elif config != current.config:
            current.config, current.bucket = config, TokenBucket(config.max_rps, now)

    def start(self, chosen: str, endpoint: Endpoint, body: bytes, draw: float, send: Send) -> ShadowPair | None:
        """Copy this user request (sent to `chosen`) to the shadowed revision, if sampled and within
        the bounds; never awaits the copy."""
        recorder = self._recorder
        if recorder is None or chosen == recorder.config.revision:
            return None
        admitted = recorder.admit(draw, time.monotonic())
        if admitted != "copy":
            if admitted != "unsampled":
                self._count(recorder.config.revision, admitted)
            return None
        pair = ShadowPair()
        task = asyncio.get_running_loop().create_task(self._run(recorder, pair, endpoint, body, send))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return pair

    def export(self) -> bytes:
        """`GET /slm/shadow`: the current phase's counts, or `{"revision": null}` outside one."""
        body = self._recorder.export() if self._recorder is not None else {"revision": None}
        return json.dumps(body, separators=(",", ":")).encode()

    async def _run(
        self, recorder: ShadowRecorder, pair: ShadowPair, endpoint: Endpoint, body: bytes, send: Send
    ) -> None:
        config = recorder.config
        started = time.monotonic()
        prompt = prompt_text(body)
        response: Any = None
        try:
            response = send(config.app_name, endpoint, copy_body(body))
            async with asyncio.timeout(config.timeout_s):
                head: Head = await response
            canary = Answer(head[0], answer_text(head[1]), time.monotonic() - started)
        except asyncio.CancelledError:
            if response is not None:
                response.cancel()
            raise
        except Exception as exc:  # a timeout, Ray/Serve errors of many kinds: all mean "the copy failed"
            if response is not None:
                response.cancel()
            logger.info("shadow copy to revision %s failed: %s: %s", config.revision, type(exc).__name__, exc)
            canary = Answer(COPY_FAILED, None, time.monotonic() - started)
        stable = await pair.stable(config.timeout_s - (time.monotonic() - started))
        if recorder is self._recorder:
            self._count(config.revision, recorder.record(prompt, stable, canary))
