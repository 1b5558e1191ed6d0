"""The operator's side of the private canary pin (`slm_serving.pins`): each deployment's token, from
the operator's key.

The key is `SLM_PIN_KEY` (`OperatorSettings.pin_key`; the chart fills it from a Secret it generates
once, so every operator replica and every restart derive the same tokens). Unset, a random key is made
per process: pins still work, but a restart changes every deployment's digest, which the next pass
rolls out in place (a `user_config` change); a validation running across that moment fails.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from slm_operator.api.models import SLMDeployment
from slm_operator.settings import OperatorSettings
from slm_serving.pins import derive_pin_token, pin_token_digest


@dataclass(frozen=True, repr=False)
class PinKey:
    """Derives per-deployment pin tokens; `repr` hides the key (it may reach a log or a traceback)."""

    key: bytes

    @classmethod
    def of(cls, settings: OperatorSettings) -> PinKey:
        return cls(settings.pin_key.get_secret_value().encode())

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


def deployment_identity(deployment: SLMDeployment) -> tuple[str, str, str]:
    """(namespace, name, uid): a recreated SLMDeployment of the same name gets a new token."""
    meta = deployment.metadata
    return str(meta.get("namespace") or "default"), str(meta["name"]), str(meta.get("uid") or "")


def pin_token(settings: OperatorSettings, deployment: SLMDeployment) -> str:
    return PinKey.of(settings).token(*deployment_identity(deployment))


def pin_digest(settings: OperatorSettings, deployment: SLMDeployment) -> str:
    return PinKey.of(settings).digest(*deployment_identity(deployment))
