"""What the rollout shells observe over HTTP: golden prompts pinned to a revision, the router's recent
requests per revision (for the live comparison and the cost per token), and its shadow pairs.

Both shells (the kopf operator in a cluster, `slm serve` on one machine) use these, so validation
means the same thing everywhere: streamed OpenAI requests through the router, pinned with the
`x-slm-revision` header and the deployment's pin token (`slm_serving.pins`: without it the router
ignores the pin, and it answers `/slm/samples` only with it), timed to the first token and to the end.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

from slm_operator.api.models import GoldenPrompt, ShadowDisagreement
from slm_operator.http_clients import async_client
from slm_operator.rollout.adapters import AdapterObservation
from slm_operator.rollout.gate import PromptOutcome, ValidationRun
from slm_operator.rollout.live import RevisionSamples
from slm_operator.rollout.shadow import ShadowWindow
from slm_serving.config import ADAPTERS_PATH, PIN_PROOF_HEADER, REVISION_HEADER
from slm_serving.samples import SAMPLES_PATH
from slm_serving.shadow import SHADOW_PATH

PROMPT_TIMEOUT_S = 120.0
"""Longest one golden prompt may take, first byte to last."""
VALIDATION_DEADLINE_S = 600.0
"""Longest a whole validation run (warm-ups, every prompt on canary and stable) may take."""
SAMPLES_TIMEOUT_S = 5.0


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
        asked = prompt.adapter or model  # a prompt naming an adapter tests it (through the router's choice)
        return await send_golden_prompt(client, prompt, asked, name, pin_token=pin_token, timeout_s=timeout_s)

    async with async_client(base_url=base_url, transport=transport) as client:
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
    tokens: dict[str, tuple[int, int]]
    """Per revision, (prompt, completion) tokens since this router instance first routed to it."""


async def fetch_samples(
    router_url: str, after: int | None, *, pin_token: str, transport: httpx.AsyncBaseTransport | None = None
) -> SamplesSnapshot:
    """`GET /slm/samples[?after=N]` from the router (it answers only the operator's pin token); raises
    httpx.HTTPError or ValueError."""
    params = {"after": str(after)} if after is not None else None
    async with (
        async_client(base_url=router_url, transport=transport, timeout=SAMPLES_TIMEOUT_S) as client,
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
        tokens = {str(name): (int(pair[0]), int(pair[1])) for name, pair in (body.get("tokens") or {}).items()}
        return SamplesSnapshot(
            instance=str(body["instance"]), last=int(body["last"]), revisions=revisions, tokens=tokens
        )
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise ValueError(f"unreadable sample window from the router: {error!r}") from error


# ---------------------------------------------------------------- the router's shadow pairs


async def fetch_shadow(
    router_url: str, *, pin_token: str, transport: httpx.AsyncBaseTransport | None = None
) -> ShadowWindow | None:
    """`GET /slm/shadow` from the router (the operator's pin token only): its counts of the current
    shadow phase, None outside one; raises httpx.HTTPError or ValueError."""
    async with (
        async_client(base_url=router_url, transport=transport, timeout=SAMPLES_TIMEOUT_S) as client,
        asyncio.timeout(SAMPLES_TIMEOUT_S),
    ):
        response = await client.get(SHADOW_PATH, headers={PIN_PROOF_HEADER: pin_token})
    response.raise_for_status()
    return parse_shadow(response.json())


async def fetch_adapters(
    router_url: str, *, pin_token: str, transport: httpx.AsyncBaseTransport | None = None
) -> AdapterObservation:
    """`GET /slm/adapters` from the router (the operator's pin token only): the LoRA versions the
    adapter revision's engines hold and those that failed to load; raises httpx.HTTPError or ValueError."""
    async with (
        async_client(base_url=router_url, transport=transport, timeout=SAMPLES_TIMEOUT_S) as client,
        asyncio.timeout(SAMPLES_TIMEOUT_S),
    ):
        response = await client.get(ADAPTERS_PATH, headers={PIN_PROOF_HEADER: pin_token})
    response.raise_for_status()
    return parse_adapter_state(response.json())


def parse_adapter_state(body: Any) -> AdapterObservation:
    """The router's adapter JSON (`{"loaded": [...], "errors": {name: message}}`); malformed is a ValueError."""
    try:
        return AdapterObservation(
            loaded=frozenset(str(name) for name in body["loaded"]),
            load_errors={str(name): str(message) for name, message in body["errors"].items()},
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"malformed adapter state: {error}") from error


def parse_shadow(body: Any) -> ShadowWindow | None:
    """The router's shadow JSON as a `ShadowWindow` (None: no phase); malformed is a ValueError."""
    try:
        if body.get("revision") is None:
            return None
        return ShadowWindow(
            revision=str(body["revision"]),
            epoch=str(body["epoch"]),
            copies=int(body["copies"]),
            completed=int(body["completed"]),
            pairs=int(body["pairs"]),
            agreed=int(body["agreed"]),
            canary_errors=int(body["canaryErrors"]),
            stable_errors=int(body["stableErrors"]),
            skipped=int(body["skipped"]),
            latency_ms=tuple((float(stable), float(canary)) for stable, canary in body["latencyMs"]),
            worst=tuple(
                ShadowDisagreement(
                    prompt=str(w["prompt"]),
                    stable=str(w["stable"]),
                    canary=str(w["canary"]),
                    distance=float(w["distance"]),
                )
                for w in body["worst"]
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"unreadable shadow counts from the router: {error!r}") from error
