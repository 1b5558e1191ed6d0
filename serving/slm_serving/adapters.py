"""LoRA adapters loaded into a running engine at runtime: no restart, the base model stays.

The engine deployment's `user_config` (`RouterUserConfig.adapters`) lists every adapter version the
engines must hold, as `name@version` (`config.adapter_engine_name`). On each `reconfigure` the engine
loads the versions it lacks (vLLM's `OpenAIServingModels.load_lora_adapter`, which calls
`AsyncLLM.add_lora`) and unloads the versions no longer listed: first out of the serving models (no
new request resolves them), then, once the requests still generating with them have finished, out
of the engine (`AsyncLLM.remove_lora`, which vLLM's own unload does not call).

A version that fails to load (a bad source, weights that do not fit the engine's `max_lora_rank`)
is recorded with its message and not retried: its source is part of its version, so a new source
is a new version. `reconfigure` never raises for it (Serve would replace the replica, base model
and all); the operator reads the failure through the router's `GET /slm/adapters` and rolls back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from slm_serving.config import AdapterRoute, adapter_engine_name
from slm_serving.model_source import ensure_model_path

logger = logging.getLogger("ray.serve")

DRAIN_POLL_S = 0.5
DRAIN_LIMIT_S = 300.0
"""Longest an unloaded version waits for its running requests before it leaves the engine anyway
(the engine deployment's graceful shutdown bound)."""


@dataclass(frozen=True)
class AdapterSync:
    """What one `reconfigure` changes: versions to load (engine name → source) and to unload."""

    load: Mapping[str, str]
    unload: frozenset[str]


def plan_adapter_sync(adapters: Iterable[AdapterRoute], loaded: Iterable[str], failed: Iterable[str]) -> AdapterSync:
    """The versions listed but neither loaded nor failed before, and those loaded but no longer listed."""
    wanted = {adapter_engine_name(a.name, v.version): v.source for a in adapters for v in a.versions}
    held, refused = set(loaded), set(failed)
    return AdapterSync(
        load={name: source for name, source in wanted.items() if name not in held | refused},
        unload=frozenset(held - wanted.keys()),
    )


class RuntimeAdapters:
    """The LoRA versions of one engine replica: vLLM's serving models (name → LoRA request) and the
    engine itself. Counts the requests running per version so an unload waits for them."""

    def __init__(self, engine: Any, serving_models: Any) -> None:
        self._engine = engine
        self._models = serving_models
        self._errors: dict[str, str] = {}
        self._running: Counter[str] = Counter()
        self._draining: set[asyncio.Task[None]] = set()

    def loaded(self) -> frozenset[str]:
        return frozenset(self._models.lora_requests)

    def state(self) -> dict[str, Any]:
        """`{"loaded": [...], "errors": {name: message}}` (the router's `GET /slm/adapters`)."""
        return {"loaded": sorted(self.loaded()), "errors": dict(self._errors)}

    async def load_listed(self, adapters: Iterable[AdapterRoute]) -> None:
        """Load the versions `adapters` lists that this engine lacks (and did not fail to load)."""
        plan = plan_adapter_sync(adapters, self.loaded(), self._errors)
        for name, source in plan.load.items():
            error = await self._load(name, source)
            if error is not None:
                logger.warning("LoRA adapter %s from %s not loaded: %s", name, source, error)
                self._errors[name] = error
            else:
                logger.info("LoRA adapter %s loaded from %s", name, source)

    async def unload_unlisted(self, adapters: Iterable[AdapterRoute]) -> None:
        """Unload the versions `adapters` no longer lists (each leaves the engine once idle)."""
        for name in sorted(plan_adapter_sync(adapters, self.loaded(), self._errors).unload):
            await self._unload(name)

    def started(self, name: str) -> None:
        self._running[name] += 1

    def finished(self, name: str) -> None:
        self._running[name] -= 1
        if self._running[name] <= 0:
            del self._running[name]

    async def _load(self, name: str, source: str) -> str | None:
        from vllm.entrypoints.serve.engine.protocol import ErrorResponse
        from vllm.entrypoints.serve.lora.protocol import LoadLoRAAdapterRequest

        try:
            path = await asyncio.to_thread(ensure_model_path, source)
            result = await self._models.load_lora_adapter(LoadLoRAAdapterRequest(lora_name=name, lora_path=path))
        except Exception as exc:  # a source that cannot be fetched: any error means "not loaded"
            return f"{type(exc).__name__}: {exc}"
        return str(result.error.message) if isinstance(result, ErrorResponse) else None

    async def _unload(self, name: str) -> None:
        from vllm.entrypoints.serve.lora.protocol import UnloadLoRAAdapterRequest

        request = self._models.lora_requests.get(name)
        if request is None:
            return
        await self._models.unload_lora_adapter(UnloadLoRAAdapterRequest(lora_name=name))
        task = asyncio.get_running_loop().create_task(self._remove_when_idle(name, request.lora_int_id))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def _remove_when_idle(self, name: str, lora_id: int) -> None:
        waited = 0.0
        while self._running.get(name) and waited < DRAIN_LIMIT_S:
            await asyncio.sleep(DRAIN_POLL_S)
            waited += DRAIN_POLL_S
        await self._engine.remove_lora(lora_id)
        logger.info("LoRA adapter %s unloaded", name)
