"""What the router and a revision's engine deployment send each other. Pure, importable without Ray.

The router forwards the client's request body unchanged (bytes: no re-serialization, no pydantic on
the router's hot path); the engine parses it with vLLM's own request models and answers with plain
tuples, which Ray serializes cheaply:

* `LLMEngine.complete(endpoint, body)` (non-streaming requests) returns a `Head` holding the whole
  JSON answer (or a vLLM/OpenAI error body) and the token counts.
* `LLMEngine.stream(endpoint, body)` (streaming requests) yields a `Head` first. If its body is
  `None`, `str` SSE chunks follow (`data: {...}\\n\\n`, ending with `data: [DONE]\\n\\n`), then a
  `Usage` tuple as the last item. If the head has a body (an error), nothing else follows.
"""

from __future__ import annotations

from typing import Final, Literal

Endpoint = Literal["completions", "chat"]

COMPLETIONS: Final = "completions"
CHAT: Final = "chat"

Head = tuple[int, bytes | None, int, int]
"""(HTTP status, JSON body or None when SSE chunks follow, prompt tokens, completion tokens)."""

Usage = tuple[int, int]
"""(prompt tokens, completion tokens) of a finished stream."""

WAITING_METRIC: Final = "num_requests_waiting"
"""Custom autoscaling metric (`record_autoscaling_stats`): requests queued inside vLLM."""
RUNNING_METRIC: Final = "num_requests_running"
"""Custom autoscaling metric: requests vLLM is generating for."""
