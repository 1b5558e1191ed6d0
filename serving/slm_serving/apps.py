"""Serve application builders named in `serveConfigV2` (`config.MODEL_IMPORT_PATH`, `ROUTER_IMPORT_PATH`).

Serve calls them with the application's `args`; a revision's are validated against the contract
model first, so a bad config fails at deploy time with a field-level message.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from slm_serving.config import ModelAppArgs
from slm_serving.engine import LLMEngine
from slm_serving.router import RouterDeployment


def model_app(args: dict[str, Any]) -> serve.Application:
    """One revision's vLLM engine, with a router in each replica (see `slm_serving.router`)."""
    app: serve.Application = LLMEngine.bind(ModelAppArgs.model_validate(args).model_dump(mode="json"))  # type: ignore[attr-defined]
    return app


def router_app(args: dict[str, Any]) -> serve.Application:
    """The router on its own (route `/`: all traffic while a canary is live); its routes are its `user_config`."""
    app: serve.Application = RouterDeployment.bind()  # type: ignore[attr-defined]
    return app
