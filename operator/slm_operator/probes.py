"""What the rollout shells observe over HTTP: golden prompts pinned to a revision, and live metrics.

Both shells (the kopf operator in a cluster, `slm serve` on one machine) use these, so validation
means the same thing everywhere: streamed OpenAI requests through the router, pinned with the
`x-slm-revision` header and the deployment's pin token (`slm_serving.pins`: without it the router
ignores the pin), timed to the first token and to the end.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from slm_operator.api.models import GoldenPrompt
from slm_operator.rollout.gate import PromptOutcome, RevisionMetrics, ValidationRun
from slm_serving.config import PIN_PROOF_HEADER, REVISION_HEADER

PROMPT_TIMEOUT_S = 120.0
METRIC_PREFIX = "ray_slm_router_"
"""The router's metrics as Ray's metrics agent exports them (`ray_` + the name in slm_serving.metrics)."""


async def send_golden_prompt(
    client: httpx.AsyncClient, prompt: GoldenPrompt, model: str, revision: str, pin_token: str
) -> PromptOutcome:
    """One golden prompt, streamed, pinned to `revision`; never raises for transport or HTTP errors."""
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
        async with client.stream(
            "POST",
            path,
            json=body,
            headers={REVISION_HEADER: revision, PIN_PROOF_HEADER: pin_token},
            timeout=PROMPT_TIMEOUT_S,
        ) as response:
            if response.status_code != 200:
                detail = (await response.aread()).decode(errors="replace")[:300]
                return PromptOutcome(prompt.name, error=f"HTTP {response.status_code}: {detail}")
            served = response.headers.get(REVISION_HEADER)
            if served != revision:  # never judge one revision by another's answers
                return PromptOutcome(prompt.name, error=f"the pin was not honoured (served by {served or 'unknown'})")
            async for line in response.aiter_lines():
                text = _chunk_text(line)
                if text and first_token is None:
                    first_token = time.perf_counter()
                if text:
                    pieces.append(text)
    except (httpx.HTTPError, ValueError) as error:
        return PromptOutcome(prompt.name, error=f"{type(error).__name__}: {error}")
    finished = time.perf_counter()
    return PromptOutcome(
        prompt.name,
        answer="".join(pieces),
        latency_ms=(finished - started) * 1000,
        ttft_ms=((first_token or finished) - started) * 1000,
    )


def _chunk_text(line: str) -> str:
    """The text of one SSE line of an OpenAI stream ('' for keep-alives and the end marker)."""
    if not line.startswith("data:"):
        return ""
    payload = line.removeprefix("data:").strip()
    if payload == "[DONE]":
        return ""
    choices = json.loads(payload).get("choices") or [{}]
    choice = choices[0]
    return str(choice.get("text") or (choice.get("delta") or {}).get("content") or "")


async def run_validation(
    base_url: str,
    prompts: Sequence[GoldenPrompt],
    model: str,
    revision: str,
    baseline: str | None,
    *,
    pin_token: str,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ValidationRun:
    """The canary's answers and, for comparison, the stable revision's.

    One request at a time, so latencies stay comparable: first an untimed warm-up on each revision (a
    fresh replica's first request pays one-off start-up costs), then each prompt on the canary and
    right after on the stable, so both see the same background load.
    """
    revisions = [revision] if baseline is None else [revision, baseline]
    async with httpx.AsyncClient(base_url=base_url, transport=transport) as client:
        if prompts:
            for name in revisions:
                await send_golden_prompt(client, prompts[0], model, name, pin_token)
        outcomes: list[PromptOutcome] = []
        reference: list[PromptOutcome] = []
        for prompt in prompts:
            outcomes.append(await send_golden_prompt(client, prompt, model, revision, pin_token))
            if baseline is not None:
                reference.append(await send_golden_prompt(client, prompt, model, baseline, pin_token))
    return ValidationRun(
        revision=revision, outcomes=tuple(outcomes), baseline_revision=baseline, baseline=tuple(reference)
    )


# ---------------------------------------------------------------- live metrics


@dataclass
class RevisionCounters:
    """Cumulative router counters of one revision (all endpoints together)."""

    requests: float = 0.0
    errors: float = 0.0
    latency_buckets: dict[float, float] = field(default_factory=dict)
    ttft_buckets: dict[float, float] = field(default_factory=dict)

    def minus(self, earlier: RevisionCounters) -> RevisionMetrics:
        """Metrics of the traffic between `earlier` and this snapshot."""
        latency = _bucket_delta(self.latency_buckets, earlier.latency_buckets)
        ttft = _bucket_delta(self.ttft_buckets, earlier.ttft_buckets)
        return RevisionMetrics(
            requests=int(self.requests - earlier.requests),
            errors=int(self.errors - earlier.errors),
            p95_latency_ms=_quantile_ms(latency, 0.95),
            p95_ttft_ms=_quantile_ms(ttft, 0.95),
        )


def parse_router_counters(exposition: str) -> dict[str, RevisionCounters]:
    """Per-revision counters from a Prometheus text exposition of the router's metrics."""
    counters: dict[str, RevisionCounters] = {}
    for family in text_string_to_metric_families(exposition):
        if not family.name.startswith(METRIC_PREFIX):
            continue
        for sample in family.samples:
            revision = sample.labels.get("revision")
            if revision is None:
                continue
            entry = counters.setdefault(revision, RevisionCounters())
            name = sample.name.removeprefix(METRIC_PREFIX)
            if name == "requests_total":
                entry.requests += sample.value
            elif name == "errors_total":
                entry.errors += sample.value
            elif name == "request_latency_seconds_bucket":
                _add_bucket(entry.latency_buckets, sample.labels["le"], sample.value)
            elif name == "time_to_first_token_seconds_bucket":
                _add_bucket(entry.ttft_buckets, sample.labels["le"], sample.value)
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
    async with httpx.AsyncClient(timeout=10) as client:
        responses = await asyncio.gather(*(client.get(url) for url in metrics_urls))
    for response in responses:
        response.raise_for_status()
        for revision, counters in parse_router_counters(response.text).items():
            entry = total.setdefault(revision, RevisionCounters())
            entry.requests += counters.requests
            entry.errors += counters.errors
            for target, source in (
                (entry.latency_buckets, counters.latency_buckets),
                (entry.ttft_buckets, counters.ttft_buckets),
            ):
                for bound, count in source.items():
                    target[bound] = target.get(bound, 0.0) + count
    return total


def _add_bucket(buckets: dict[float, float], le: str, value: float) -> None:
    bound = float("inf") if le in {"+Inf", "inf"} else float(le)
    buckets[bound] = buckets.get(bound, 0.0) + value


def _bucket_delta(now: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {bound: count - before.get(bound, 0.0) for bound, count in now.items()}


def _quantile_ms(buckets: dict[float, float], q: float) -> float | None:
    """histogram_quantile() as Prometheus computes it (linear within the bucket), in milliseconds."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower * 1000
            share = (rank - below) / (count - below) if count > below else 1.0
            return (lower + (bound - lower) * share) * 1000
        lower, below = bound, count
    return lower * 1000
