"""`SampleWindow`: the router's recent requests per revision, for the rollout gate's live comparison.

Prometheus histograms blur latencies into buckets and their p95s of a few dozen requests are noisy;
the gate instead tests the requests themselves (`slm_operator.rollout.live`). The router records each
answered request here (end-to-end latency of a success, time to first token of a streamed success,
error or not), in bounded ring buffers, one set per revision the router routes to; the operator reads
them over HTTP (`GET /slm/samples`, see `export`).

Every record gets the next sequence number, so a reader asks for what came after its cursor; `instance`
changes when the router restarts (a new window, numbers from 1 again). The window holds the most
recent `size` records of each kind per revision; a reader that falls behind gets the most recent ones.
Only numbers are kept: no prompt, answer or client detail.

Tokens are counted, not sampled: per revision, the prompt and generated tokens of every successful
request since the window began tracking it (`tokens` in the export, whatever the cursor), so a reader
that subtracts two reads of the same `instance` gets them exactly, however much traffic passed between
(the operator's cost per token, `slm_operator.rollout.cost`).
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Final

SAMPLES_PATH: Final = "/slm/samples"
DEFAULT_WINDOW: Final = 2048
"""Records of each kind per revision: enough for the gate's decisive sample count (400 by default)
with room to spare, at ~50 bytes a record."""


class _RevisionWindow:
    def __init__(self, size: int) -> None:
        self.latency: deque[tuple[int, float]] = deque(maxlen=size)
        self.ttft: deque[tuple[int, float]] = deque(maxlen=size)
        self.outcomes: deque[tuple[int, bool]] = deque(maxlen=size)
        """(sequence, failed) for every answered request."""
        self.prompt_tokens = 0
        self.completion_tokens = 0


class SampleWindow:
    """Bounded per-revision record of recent requests. Not thread-safe: the router's event loop owns it."""

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        self.instance = uuid.uuid4().hex
        self._size = size
        self._last = 0
        self._revisions: dict[str, _RevisionWindow] = {}

    def keep(self, revisions: Iterable[str]) -> None:
        """Record only these revisions (the router's routes); others' records are dropped."""
        wanted = set(revisions)
        self._revisions = {name: self._revisions.get(name) or _RevisionWindow(self._size) for name in wanted}

    def record(self, revision: str, status: int, latency_s: float) -> None:
        """One answered request (latency counts for successes only, as in the router's histograms)."""
        window = self._revisions.get(revision)
        if window is None:
            return
        self._last += 1
        failed = status >= 400
        window.outcomes.append((self._last, failed))
        if not failed:
            window.latency.append((self._last, latency_s * 1000))

    def record_tokens(self, revision: str, prompt_tokens: int, completion_tokens: int) -> None:
        """The usage of one successful request (counted in `tokens`)."""
        window = self._revisions.get(revision)
        if window is not None:
            window.prompt_tokens += prompt_tokens
            window.completion_tokens += completion_tokens

    def record_ttft(self, revision: str, seconds: float) -> None:
        window = self._revisions.get(revision)
        if window is not None:
            self._last += 1
            window.ttft.append((self._last, seconds * 1000))

    def export(self, after: int | None) -> bytes:
        """JSON: `instance`, `last` (the newest sequence number), `tokens` (per revision, [prompt,
        completion] since it was first routed to) and, when `after` is given, per revision `requests`,
        `errors`, `latency_ms` and `ttft_ms` of what was recorded after it."""
        tokens = {name: [w.prompt_tokens, w.completion_tokens] for name, w in self._revisions.items()}
        body: dict[str, object] = {"instance": self.instance, "last": self._last, "tokens": tokens}
        if after is not None:
            body["revisions"] = {
                name: {
                    "requests": sum(1 for seq, _ in window.outcomes if seq > after),
                    "errors": sum(1 for seq, failed in window.outcomes if seq > after and failed),
                    "latency_ms": [round(v, 2) for seq, v in window.latency if seq > after],
                    "ttft_ms": [round(v, 2) for seq, v in window.ttft if seq > after],
                }
                for name, window in self._revisions.items()
            }
        return json.dumps(body, separators=(",", ":")).encode()


def parse_after(query: str) -> int | None:
    """The `after` cursor of a `GET /slm/samples` query string (None: absent or not a number)."""
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "after" and value.isdigit():
            return int(value)
    return None
