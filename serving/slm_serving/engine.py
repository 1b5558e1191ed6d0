"""`LLMEngine`: one model revision's Serve deployment, a thin shell over vLLM's `AsyncLLM`.

Every replica also carries a `Router` (`slm_serving.router`), whose routes are the deployment's
`user_config` (`reconfigure`). When the application has the HTTP route (the stable revision outside
rollouts) it answers the OpenAI API (`__call__`) and serves its own revision in-process. The router
application reaches any revision through `complete` / `stream`.

Why not `ray.serve.llm`'s `LLMServer`: on these machines it cost ~10x the CPU per request of a thin
deployment (the spikes measured 0.30x of bare vLLM's throughput against 0.79x) and pulls extra
dependencies. This deployment instead builds vLLM's own OpenAI front-end objects with vLLM's own
`init_app_state` (`OpenAIServingModels`, `OpenAIServingCompletion`, `OpenAIServingChat`): request
parsing, chat templates, sampling defaults, streaming chunks, usage and error bodies are exactly
those of `vllm serve`. Only the HTTP layer is the router's (see `slm_serving.protocol`).

LoRA adapters are loaded and unloaded at runtime from the `user_config` (`slm_serving.adapters`):
an adapter rollout changes no replica. A request for one names its version (`name@version`, chosen
by the router); the answer's `model` is that version's name.

The `tiny://slow` test fixture (`slm_serving.tiny_models.paced`, for bench/gate_accuracy.py) is the
only source whose answers are paced: each takes twice the engine's own time, each streamed chunk too.

A model that fails to load raises from `__init__`: Serve reports the replica's exception text in
the application's status message (DEPLOY_FAILED) instead of retrying silently.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncGenerator
from typing import Any, cast

from pydantic import ValidationError
from ray import serve
from starlette.datastructures import Headers, State
from starlette.requests import Request
from starlette.responses import Response

from slm_serving.adapters import RuntimeAdapters
from slm_serving.config import ENGINE_DEPLOYMENT_NAME, ModelAppArgs, RevisionRoute, RouterUserConfig, revision_app_name
from slm_serving.metrics import EngineMetrics
from slm_serving.model_source import ensure_model_path
from slm_serving.protocol import CHAT, RUNNING_METRIC, WAITING_METRIC, Head, Usage
from slm_serving.router import Router
from slm_serving.tiny_models import pace, paced, slowdown
from slm_serving.vllm_args import build_vllm_args, vllm_defaults

logger = logging.getLogger("ray.serve")


class _RequestContext:
    """The two attributes of a Starlette request vLLM's serving classes read: headers and state."""

    __slots__ = ("headers", "state")

    def __init__(self) -> None:
        self.headers = Headers()
        self.state = State()


class _QueueStats:
    """vLLM stat logger keeping the scheduler's last waiting/running counts (custom autoscaling metrics)."""

    def __init__(self, vllm_config: Any = None, engine_index: int = 0) -> None:
        self.waiting = 0
        self.running = 0

    def record(
        self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0
    ) -> None:
        if scheduler_stats is not None:
            self.waiting = scheduler_stats.num_waiting_reqs
            self.running = scheduler_stats.num_running_reqs

    def log_engine_initialized(self) -> None:
        """Nothing to log: the replica's own log line says the engine is up."""

    def log(self) -> None:
        """Nothing to log periodically."""

    def record_sleep_state(self, is_awake: int, level: int) -> None:
        """Sleep mode is not used."""


@serve.deployment(name=ENGINE_DEPLOYMENT_NAME)
class LLMEngine:
    """Serves one revision's model: over HTTP through its own router when its application has the route,
    and to routers elsewhere through `serve.get_app_handle`."""

    async def __init__(self, args: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits async constructors
        started = time.monotonic()
        app_args = ModelAppArgs.model_validate(args)
        self.revision = app_args.revision
        engine = app_args.engine
        model_path = ensure_model_path(engine.source)  # before importing vLLM: a bad source fails fast

        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM
        from vllm.v1.metrics.loggers import StatLoggerBase

        vllm_args = build_vllm_args(engine, model_path, vllm_defaults())

        stats_cls = type("QueueStats", (_QueueStats, StatLoggerBase), {})
        self._stats: _QueueStats = stats_cls()
        engine_args = AsyncEngineArgs.from_cli_args(vllm_args)
        vllm_config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
        self.engine = AsyncLLM.from_vllm_config(
            vllm_config=vllm_config,
            usage_context=UsageContext.OPENAI_API_SERVER,
            stat_loggers=[lambda _config, _index: cast(StatLoggerBase, self._stats)],
            enable_log_requests=engine_args.enable_log_requests,
            disable_log_stats=engine_args.disable_log_stats,
        )
        state = State()
        await init_app_state(self.engine, state, vllm_args, await self.engine.get_supported_tasks())
        self._completion = state.openai_serving_completion
        self._chat = state.openai_serving_chat
        self._adapters = RuntimeAdapters(self.engine, state.openai_serving_models)
        self._in_flight = 0
        self._request_models = _request_models()
        self._slowdown = slowdown(engine.source)
        self._metrics = EngineMetrics(self.revision, serve.get_replica_context().replica_id.unique_id)
        alone = RevisionRoute(revision=self.revision, app_name=revision_app_name(self.revision), weight=100)
        self._router = Router(
            self,
            RouterUserConfig(served_model_name=engine.served_model_name, routes=(alone,)),
        )
        logger.info(
            "revision %s: %s (%s) ready in %.1fs", self.revision, engine.source, model_path, time.monotonic() - started
        )

    async def __call__(self, request: Request) -> Response:
        """An HTTP request, when this revision's application has the route: the OpenAI API, `/healthz`."""
        return await self._router.handle(request)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """New routes and adapter versions (the deployment's `user_config`): applied in place, no
        restart. New versions are loaded before the router may choose them, and the router stops
        choosing retired ones before they are unloaded."""
        config = RouterUserConfig.model_validate(user_config)
        await self._adapters.load_listed(config.adapters)
        await self._router.reconfigure(config)
        await self._adapters.unload_unlisted(config.adapters)

    def adapter_state(self) -> dict[str, Any]:
        """The LoRA versions this replica holds and those that failed to load."""
        return self._adapters.state()

    async def complete(self, endpoint: str, body: bytes, lora: str | None = None) -> Head:
        """A non-streaming request (see `slm_serving.protocol`), with LoRA version `lora` if given."""
        started = time.monotonic()
        self._in_flight += 1
        lora = self._loaded_version(lora)
        if lora is not None:
            self._adapters.started(lora)
        try:
            parsed = self._parse(endpoint, body, lora)
            if isinstance(parsed, tuple):
                return parsed
            context = _RequestContext()
            result = await self._create(endpoint, parsed, context)
            if self._slowdown != 1:
                await pace(self._slowdown, started)
            if _is_error(result):
                return (result.error.code, result.model_dump_json().encode(), 0, 0)
            if not hasattr(result, "model_dump_json"):  # a stream although the body did not ask for one
                return _error(400, "use stream: true for a streaming request", "BadRequestError", "stream")
            usage = result.usage
            return (200, result.model_dump_json().encode(), usage.prompt_tokens, usage.completion_tokens or 0)
        finally:
            self._in_flight -= 1
            if lora is not None:
                self._adapters.finished(lora)

    async def stream(
        self, endpoint: str, body: bytes, lora: str | None = None
    ) -> AsyncGenerator[Head | str | Usage, None]:
        """A streaming request: a head, then SSE chunks, then the token counts."""
        started = time.monotonic()
        self._in_flight += 1
        lora = self._loaded_version(lora)
        if lora is not None:
            self._adapters.started(lora)
        try:
            parsed = self._parse(endpoint, body, lora)
            if isinstance(parsed, tuple):
                yield parsed
                return
            context = _RequestContext()
            result = await self._create(endpoint, parsed, context)
            if _is_error(result):
                yield (result.error.code, result.model_dump_json().encode(), 0, 0)
                return
            if hasattr(result, "model_dump_json"):  # a whole answer although the body asked for a stream
                yield (200, result.model_dump_json().encode(), 0, 0)
                return
            yield (200, None, 0, 0)
            chunks = paced(result, self._slowdown, started) if self._slowdown != 1 else result
            async for chunk in chunks:
                yield chunk
            metadata = getattr(context.state, "request_metadata", None)
            usage = getattr(metadata, "final_usage_info", None)
            yield (usage.prompt_tokens, usage.completion_tokens or 0) if usage else (0, 0)
        finally:
            self._in_flight -= 1
            if lora is not None:
                self._adapters.finished(lora)

    def queue_depth(self) -> float:
        """Requests waiting inside vLLM for a slot in the running batch."""
        return float(self._stats.waiting) if self._in_flight else 0.0

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's custom autoscaling metrics hook (read by `slm_serving.autoscaling`)."""
        busy = self._in_flight > 0  # the scheduler only reports while it steps: idle means empty
        waiting, running = (float(self._stats.waiting), float(self._stats.running)) if busy else (0.0, 0.0)
        self._metrics.set_queue(waiting, running)
        return {WAITING_METRIC: waiting, RUNNING_METRIC: running}

    async def check_health(self) -> None:
        """Serve's health check: raises once the engine core died."""
        await self.engine.check_health()

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()

    def _loaded_version(self, lora: str | None) -> str | None:
        """`lora`, or where a `reconfigure` retired it after the router chose it, the version this
        replica's own routes now give the adapter (so the request is still answered)."""
        if lora is None or lora in self._adapters.loaded():
            return lora
        return self._router.pick_adapter(lora.rpartition("@")[0], random.random()) or lora

    def _parse(self, endpoint: str, body: bytes, lora: str | None) -> Any:
        model = self._request_models.get(endpoint)
        if model is None:
            return _error(404, f"unknown endpoint {endpoint!r}", "NotFoundError", None)
        try:
            request = model.model_validate_json(body)
        except ValidationError as exc:
            return _validation_error(exc)
        if lora is not None:
            request.model = lora  # how vLLM's serving classes pick the LoRA request
        return request

    async def _create(self, endpoint: str, request: Any, context: _RequestContext) -> Any:
        serving = self._chat if endpoint == CHAT else self._completion
        if serving is None:
            return _error_response(501, f"this model does not support the {endpoint} API", "NotImplementedError")
        try:
            if endpoint == CHAT:
                return await serving.create_chat_completion(request, context)
            return await serving.create_completion(request, context)
        except Exception as exc:  # what vLLM's server turns into an error body, mapped the same way
            from vllm.entrypoints.serve import create_error_response

            return create_error_response(exc)


def _request_models() -> dict[str, Any]:
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    return {"completions": CompletionRequest, CHAT: ChatCompletionRequest}


def _is_error(result: Any) -> bool:
    from vllm.entrypoints.serve.engine.protocol import ErrorResponse

    return isinstance(result, ErrorResponse)


def _error_response(status: int, message: str, kind: str) -> Any:
    from vllm.entrypoints.serve.engine.protocol import ErrorInfo, ErrorResponse

    return ErrorResponse(error=ErrorInfo(message=message, type=kind, code=status))


def _error(status: int, message: str, kind: str, param: str | None) -> Head:
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return (status, json.dumps(body).encode(), 0, 0)


def _validation_error(exc: ValidationError) -> Head:
    """A 400 in vLLM's shape for a body its request model rejects (malformed JSON or fields)."""
    from vllm.entrypoints.serve.exception_handling.handlers.validation import clean_loc_for_param

    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0] if errors else None
    param = clean_loc_for_param(tuple(first["loc"])) if first and first["loc"] else None
    message = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors[:5])
    return _error(400, message or "invalid request body", "BadRequestError", param)
