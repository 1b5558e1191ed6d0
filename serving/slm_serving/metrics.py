"""The router's per-revision Prometheus metrics and the engines' queue gauges, through `ray.util.metrics`.

Ray exports them from every node's metrics agent (the port KubeRay's pod monitors scrape, and
`LocalServe.metrics_url` locally), named with Ray's `ray_` prefix, e.g.
`ray_slm_router_requests_total{revision="abc",endpoint="chat",code="200"}`. That way several router
replicas add up in one place, unlike a `/metrics` route that would answer for one random replica.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from ray.util import metrics

from slm_serving.samples import SampleWindow
from slm_serving.shadow import ShadowOutcome

TTFT_BUCKETS: Final = [
    0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30,
]  # fmt: skip
"""1 ms to 30 s, each bound at most 1.67 times the one before: the rollout gate compares p95s estimated
within these buckets against ratio limits such as 1.5x, which wider buckets (0.1 s, 0.25 s) blur."""
LATENCY_BUCKETS: Final = [*TTFT_BUCKETS, 60, 120]

OTHER_REVISION_TAG: Final = "other"
"""`revision` tag of everything but a live revision: requests refused before one was chosen (bad body,
unknown model, a pin to a revision that is not live) and the last answers of a revision retired
meanwhile. So the tag's values are the live revisions and this one, whatever clients send."""


def revision_tag(revision: str | None, live: frozenset[str]) -> str:
    """The `revision` tag for a request served (or refused) as `revision`."""
    return revision if revision is not None and revision in live else OTHER_REVISION_TAG


class RouterMetrics:
    """Requests, errors, latency, time to first token and tokens of user traffic, tagged by revision
    (bounded: `revision_tag`); the same requests one by one in `window`, for the rollout gate; the
    operator's own requests apart (`observe_validation`)."""

    def __init__(self) -> None:
        self.window = SampleWindow()
        self._live: frozenset[str] = frozenset()
        self.validation = metrics.Counter(
            "slm_router_validation_requests_total",
            description="The operator's pinned requests (golden prompts), kept out of the user metrics "
            "the rollout gate judges.",
            tag_keys=("revision", "code"),
        )
        self.requests = metrics.Counter(
            "slm_router_requests_total",
            description="Requests answered by the router, by revision, endpoint and HTTP status.",
            tag_keys=("revision", "endpoint", "code"),
        )
        self.errors = metrics.Counter(
            "slm_router_errors_total",
            description="Requests answered with an HTTP status of 400 or more.",
            tag_keys=("revision", "endpoint", "code"),
        )
        self.latency = metrics.Histogram(
            "slm_router_request_latency_seconds",
            description="Time from receiving a request to the end of its answer.",
            boundaries=LATENCY_BUCKETS,
            tag_keys=("revision", "endpoint"),
        )
        self.ttft = metrics.Histogram(
            "slm_router_time_to_first_token_seconds",
            description="Streaming requests: time from receiving the request to the first token chunk.",
            boundaries=TTFT_BUCKETS,
            tag_keys=("revision", "endpoint"),
        )
        self.prompt_tokens = metrics.Counter(
            "slm_router_prompt_tokens_total",
            description="Prompt tokens of successful requests.",
            tag_keys=("revision",),
        )
        self.completion_tokens = metrics.Counter(
            "slm_router_completion_tokens_total",
            description="Generated tokens of successful requests.",
            tag_keys=("revision",),
        )
        self.shadow = metrics.Counter(
            "slm_router_shadow_requests_total",
            description="Shadow phase: sampled user requests by shadowed revision and outcome: agreed, "
            "disagreed (pairs compared), canary_error (the copy failed), stable_error (the user's answer "
            "failed: not compared), abandoned (the user's answer never came), skipped_rate and "
            "skipped_in_flight (not copied: over maxShadowRps, maxInFlight).",
            tag_keys=("revision", "outcome"),
        )

    def set_live(self, revisions: Iterable[str]) -> None:
        """The revisions that may appear as tag values (the router's current routes)."""
        self._live = frozenset(revisions)

    def observe(
        self,
        revision: str | None,
        endpoint: str,
        status: int,
        latency_s: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """One finished user request (`revision` None: refused before a revision was chosen)."""
        revision = revision_tag(revision, self._live)
        self.window.record(revision, status, latency_s)
        code = str(status)
        tags = {"revision": revision, "endpoint": endpoint, "code": code}
        self.requests.inc(1, tags)
        if status >= 400:
            self.errors.inc(1, tags)
            return
        self.latency.observe(latency_s, {"revision": revision, "endpoint": endpoint})
        self.window.record_tokens(revision, prompt_tokens, completion_tokens)
        if prompt_tokens:
            self.prompt_tokens.inc(prompt_tokens, {"revision": revision})
        if completion_tokens:
            self.completion_tokens.inc(completion_tokens, {"revision": revision})

    def observe_ttft(self, revision: str, endpoint: str, seconds: float) -> None:
        self.window.record_ttft(revision, seconds)
        self.ttft.observe(seconds, {"revision": revision_tag(revision, self._live), "endpoint": endpoint})

    def observe_shadow(self, revision: str, outcome: ShadowOutcome) -> None:
        """One sampled request of the shadow phase (`revision`: the shadowed one). Bounded tags: the live
        revisions (and `other`) times the seven outcomes."""
        self.shadow.inc(1, {"revision": revision_tag(revision, self._live), "outcome": outcome.value})

    def observe_validation(self, revision: str | None, status: int) -> None:
        """One finished request of the operator's."""
        self.validation.inc(1, {"revision": revision_tag(revision, self._live), "code": str(status)})


class EngineMetrics:
    """One engine replica's vLLM queue: what the queue-depth autoscaler decides on, for dashboards."""

    def __init__(self, revision: str, replica: str) -> None:
        self._tags = {"revision": revision, "replica": replica}
        self.waiting = metrics.Gauge(
            "slm_engine_requests_waiting",
            description="Requests queued inside vLLM for a place in the running batch (queue depth).",
            tag_keys=("revision", "replica"),
        )
        self.running = metrics.Gauge(
            "slm_engine_requests_running",
            description="Requests vLLM is generating for.",
            tag_keys=("revision", "replica"),
        )

    def set_queue(self, waiting: float, running: float) -> None:
        self.waiting.set(waiting, self._tags)
        self.running.set(running, self._tags)
