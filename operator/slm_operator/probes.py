"""What the rollout shells observe over HTTP: golden prompts pinned to a revision, the router's recent
requests per revision (for the live comparison), and its Prometheus metrics.

Both shells (the kopf operator in a cluster, `slm serve` on one machine) use these, so validation
means the same thing everywhere: streamed OpenAI requests through the router, pinned with the
`x-slm-revision` header and the deployment's pin token (`slm_serving.pins`: without it the router
ignores the pin, and it answers `/slm/samples` only with it), timed to the first token and to the end.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse
from prometheus_client.parser import text_string_to_metric_families

from slm_operator.api.models import GoldenPrompt
from slm_operator.rollout.gate import PromptOutcome, ValidationRun
from slm_operator.rollout.live import RevisionSamples
from slm_serving.config import PIN_PROOF_HEADER, REVISION_HEADER
from slm_serving.samples import SAMPLES_PATH

PROMPT_TIMEOUT_S = 120.0
"""Longest one golden prompt may take, first byte to last."""
VALIDATION_DEADLINE_S = 600.0
"""Longest a whole validation run (warm-ups, every prompt on canary and stable) may take."""
SAMPLES_TIMEOUT_S = 5.0
SCRAPE_TIMEOUT_S = 10.0
METRIC_PREFIX = "ray_slm_router_"
"""The router's metrics as Ray's metrics agent exports them (`ray_` + the name in slm_serving.metrics)."""


async def send_golden_prompt(
    client: httpx.AsyncClient,
    prompt: GoldenPrompt,
    model: str,
    revision: str,
    *,
    pin_token: str,
    timeout_s: float = PROMPT_TIMEOUT_S,
) -> PromptOutcome:
    """One golden prompt, streamed over SSE (httpx-sse), pinned to `revision` with the deployment's
    `pin_token`, within `timeout_s` in total (httpx's own timeout bounds each read, not the request).
    Never raises for transport, HTTP or stream errors: an error chunk inside the stream (vLLM's
    `{"error": …}` after a 200) is an error too, and so is an answer from another revision."""
    if prompt.messages is not None:
        path = "/v1/chat/completions"
        body: dict[str, Any] = {"messages": [m.model_dump() for m in prompt.messages]}
    else:
        path, body = "/v1/completions", {"prompt": prompt.prompt}
    body |= {"model": model, "max_tokens": prompt.max_tokens, "temperature": 0, "stream": True}
    started = time.perf_counter()
    first_token: float | None = None
    pieces: list[str] = []
    try:
        async with asyncio.timeout(timeout_s):
            headers = {REVISION_HEADER: revision, PIN_PROOF_HEADER: pin_token}
            async with aconnect_sse(client, "POST", path, json=body, headers=headers, timeout=timeout_s) as source:
                if source.response.status_code != 200:
                    detail = (await source.response.aread()).decode(errors="replace")[:300]
                    return PromptOutcome(prompt.name, error=f"HTTP {source.response.status_code}: {detail}")
                served = source.response.headers.get(REVISION_HEADER)
                if served != revision:  # never judge one revision by another's answers
                    return PromptOutcome(
                        prompt.name, error=f"the pin was not honoured (served by {served or 'unknown'})"
                    )
                async for event in source.aiter_sse():
                    text = chunk_text(event.data)
                    if text and first_token is None:
                        first_token = time.perf_counter()
                    pieces.append(text)
    except TimeoutError:
        return PromptOutcome(prompt.name, error=f"no complete answer within {timeout_s:g} s")
    except StreamError as error:
        return PromptOutcome(prompt.name, error=f"error in the stream: {error}")
    except (httpx.HTTPError, SSEError, ValueError) as error:
        return PromptOutcome(prompt.name, error=f"{type(error).__name__}: {error}")
    finished = time.perf_counter()
    return PromptOutcome(
        prompt.name,
        answer="".join(pieces),
        latency_ms=(finished - started) * 1000,
        ttft_ms=((first_token or finished) - started) * 1000,
    )


class StreamError(Exception):
    """The server reported an error inside a stream it had started with 200."""


def chunk_text(data: str) -> str:
    """The text of one SSE event's data in an OpenAI stream ('' for the end marker and role-only
    deltas); raises `StreamError` for an error chunk, `ValueError` for data that is not JSON."""
    if data.strip() == "[DONE]":
        return ""
    chunk = json.loads(data)
    if not isinstance(chunk, dict):
        raise ValueError(f"unexpected stream chunk: {data[:200]}")
    if chunk.get("error"):
        error = chunk["error"]
        raise StreamError(str(error.get("message") or error) if isinstance(error, dict) else str(error))
    choice = (chunk.get("choices") or [{}])[0]
    return str(choice.get("text") or (choice.get("delta") or {}).get("content") or "")


async def run_validation(
    base_url: str,
    prompts: Sequence[GoldenPrompt],
    model: str,
    revision: str,
    baseline: str | None,
    *,
    pin_token: str,
    deadline_s: float = VALIDATION_DEADLINE_S,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ValidationRun:
    """The canary's answers and, for comparison, the stable revision's, all within `deadline_s`.

    One request at a time, so latencies stay comparable: first an untimed warm-up on each revision (a
    fresh replica's first request pays one-off start-up costs), then each prompt on the canary and
    right after on the stable, so both see the same background load. Prompts the deadline leaves no
    time for count as errors (a canary that slow fails its validation rather than hold it open).
    """
    revisions = [revision] if baseline is None else [revision, baseline]
    ends = time.monotonic() + deadline_s

    async def send(prompt: GoldenPrompt, name: str) -> PromptOutcome:
        left = ends - time.monotonic()
        if left <= 0:
            return PromptOutcome(prompt.name, error=f"validation deadline of {deadline_s:g} s passed")
        timeout_s = min(PROMPT_TIMEOUT_S, left)
        return await send_golden_prompt(client, prompt, model, name, pin_token=pin_token, timeout_s=timeout_s)

    async with httpx.AsyncClient(base_url=base_url, transport=transport) as client:
        if prompts:
            for name in revisions:
                await send(prompts[0], name)
        outcomes: list[PromptOutcome] = []
        reference: list[PromptOutcome] = []
        for prompt in prompts:
            outcomes.append(await send(prompt, revision))
            if baseline is not None:
                reference.append(await send(prompt, baseline))
    return ValidationRun(
        revision=revision, outcomes=tuple(outcomes), baseline_revision=baseline, baseline=tuple(reference)
    )


# ---------------------------------------------------------------- the router's recent requests


@dataclass(frozen=True)
class SamplesSnapshot:
    """One read of the router's sample window (`slm_serving.samples`)."""

    instance: str
    """Changes when the router restarts (its sequence numbers start again)."""
    last: int
    """Sequence number of the newest record: the cursor for the next read."""
    revisions: dict[str, RevisionSamples]
    """What each revision recorded after the cursor asked for (empty without one)."""


async def fetch_samples(
    router_url: str, after: int | None, *, pin_token: str, transport: httpx.AsyncBaseTransport | None = None
) -> SamplesSnapshot:
    """`GET /slm/samples[?after=N]` from the router (it answers only the operator's pin token); raises
    httpx.HTTPError or ValueError."""
    params = {"after": str(after)} if after is not None else None
    async with (
        httpx.AsyncClient(base_url=router_url, transport=transport, timeout=SAMPLES_TIMEOUT_S) as client,
        asyncio.timeout(SAMPLES_TIMEOUT_S),
    ):
        response = await client.get(SAMPLES_PATH, params=params, headers={PIN_PROOF_HEADER: pin_token})
    response.raise_for_status()
    return parse_samples(response.json())


def parse_samples(body: Any) -> SamplesSnapshot:
    """The window's JSON as typed samples; anything malformed is a ValueError (a router of another version)."""
    try:
        revisions = {
            str(name): RevisionSamples(
                requests=int(entry["requests"]),
                errors=int(entry["errors"]),
                latency_ms=tuple(float(v) for v in entry["latency_ms"]),
                ttft_ms=tuple(float(v) for v in entry["ttft_ms"]),
            )
            for name, entry in (body.get("revisions") or {}).items()
        }
        return SamplesSnapshot(instance=str(body["instance"]), last=int(body["last"]), revisions=revisions)
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"unreadable sample window from the router: {error!r}") from error


# ---------------------------------------------------------------- Prometheus counters


@dataclass
class RevisionCounters:
    """Cumulative router counters of one revision (all endpoints and router replicas together)."""

    requests: float = 0.0
    errors: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0

    def add(self, other: RevisionCounters) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


_COUNTERS = {
    "requests_total": "requests",
    "errors_total": "errors",
    "prompt_tokens_total": "prompt_tokens",
    "completion_tokens_total": "completion_tokens",
}


def parse_router_counters(exposition: str) -> dict[str, RevisionCounters]:
    """Per-revision counters from a Prometheus text exposition of the router's metrics."""
    counters: dict[str, RevisionCounters] = {}
    for family in text_string_to_metric_families(exposition):
        if not family.name.startswith(METRIC_PREFIX):
            continue
        for sample in family.samples:
            revision = sample.labels.get("revision")
            attribute = _COUNTERS.get(sample.name.removeprefix(METRIC_PREFIX))
            if revision is None or attribute is None:
                continue
            entry = counters.setdefault(revision, RevisionCounters())
            setattr(entry, attribute, getattr(entry, attribute) + sample.value)
    return counters


POD_IP_FIELD = "{pod_ip}"
"""In `SLM_METRICS_URL_TEMPLATE`: one URL per Running pod of the RayService (the router's metrics are
exported by the Ray node its replica runs on, which is any worker)."""


def expand_metrics_urls(template: str, name: str, namespace: str, pod_ips: Sequence[str]) -> list[str]:
    """The Prometheus endpoints to scrape: each comma-separated entry of `template` with `{name}` and
    `{namespace}` filled in, once per pod IP if it has `{pod_ip}` (IPv6 addresses get brackets)."""
    urls = []
    for entry in (e.strip() for e in template.split(",")):
        if not entry:
            continue
        url = entry.replace("{name}", name).replace("{namespace}", namespace)
        if POD_IP_FIELD in url:
            urls += [url.replace(POD_IP_FIELD, f"[{ip}]" if ":" in ip else ip) for ip in pod_ips]
        else:
            urls.append(url)
    return urls


async def scrape_router_counters(metrics_urls: Iterable[str]) -> dict[str, RevisionCounters]:
    """Sum the router counters over every metrics endpoint (one per Ray node)."""
    total: dict[str, RevisionCounters] = {}
    async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT_S) as client, asyncio.timeout(SCRAPE_TIMEOUT_S):
        responses = await asyncio.gather(*(client.get(url) for url in metrics_urls))
    for response in responses:
        response.raise_for_status()
        for revision, counters in parse_router_counters(response.text).items():
            total.setdefault(revision, RevisionCounters()).add(counters)
    return total
