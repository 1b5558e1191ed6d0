"""The operator's side of the private canary pin (`slm_serving.pins`): its key and each deployment's token.

The key comes from `SLM_PIN_KEY` (the chart fills it from a Secret it generates once, so every
operator replica and every restart derive the same tokens). Without it a random key is made per
process: pins still work, but a restart changes every deployment's digest, which the next reconcile
rolls out in place (a `user_config` change); a validation running across that moment fails.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from slm_operator.settings import OperatorSettings
from slm_serving.pins import derive_pin_token, pin_token_digest

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class PinKey:
    """Derives per-deployment pin tokens; `repr` hides the key (it may reach a log or a traceback)."""

    key: bytes

    @classmethod
    def from_settings(cls, settings: OperatorSettings) -> PinKey:
        if settings.pin_key is not None:
            return cls(settings.pin_key.get_secret_value().encode())
        log.warning("SLM_PIN_KEY is unset: canary pin tokens change whenever the operator restarts")
        return cls.random()

    @classmethod
    def random(cls) -> PinKey:
        return cls(secrets.token_bytes(32))

    def token(self, namespace: str, name: str, uid: str) -> str:
        """What the operator sends to this deployment's router to pin a revision."""
        return derive_pin_token(self.key, f"{namespace}/{name}/{uid}")

    def digest(self, namespace: str, name: str, uid: str) -> str:
        """What this deployment's router holds to check it."""
        return pin_token_digest(self.token(namespace, name, uid))

    def __repr__(self) -> str:
        return "PinKey(<hidden>)"
