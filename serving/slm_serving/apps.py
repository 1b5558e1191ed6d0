"""Serve application builders named in `serveConfigV2` (`config.ROUTER_IMPORT_PATH`, `MODEL_IMPORT_PATH`).

Serve calls them with the application's `args`; they validate the args against the contract models
first, so a bad config fails at deploy time with a field-level message.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from slm_serving.config import ModelAppArgs, RouterArgs
from slm_serving.engine import LLMEngine
from slm_serving.router import Router


def router_app(args: dict[str, Any]) -> serve.Application:
    """The OpenAI ingress; its weights arrive as the Router deployment's `user_config`."""
    app: serve.Application = Router.bind(RouterArgs.model_validate(args).model_dump(mode="json"))  # type: ignore[attr-defined]
    return app


def model_app(args: dict[str, Any]) -> serve.Application:
    """One revision's vLLM engine."""
    app: serve.Application = LLMEngine.bind(ModelAppArgs.model_validate(args).model_dump(mode="json"))  # type: ignore[attr-defined]
    return app
