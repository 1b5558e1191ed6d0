"""The private canary pin: who may choose the revision that serves a request. Pure, importable without Ray.

Only the operator pins (golden prompts on a canary at weight 0). It derives one token per deployment
from a key only it holds (`derive_pin_token`: HMAC-SHA256 of the deployment's identity), sends it in
`PIN_PROOF_HEADER`, and puts only the token's SHA-256 in the router's `user_config`. So:

* the serve config (readable by anyone who can read the RayService) holds no secret: the digest does
  not give the token back;
* a token seen by one deployment's pods (the operator sends it there) pins nothing in any other;
* the router compares digests with `hmac.compare_digest` (constant time), so response timing does not
  reveal how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum

_TOKEN_CONTEXT = b"slm-operator canary pin v1\x00"


def derive_pin_token(key: bytes, identity: str) -> str:
    """The pin token of one deployment (`identity`: its namespace, name and uid), as 64 hex characters."""
    return hmac.new(key, _TOKEN_CONTEXT + identity.encode(), hashlib.sha256).hexdigest()


def pin_token_digest(token: str) -> str:
    """What the router holds for `token` (`RouterUserConfig.pin_token_sha256`)."""
    return hashlib.sha256(token.encode()).hexdigest()


class PinProof(Enum):
    """What a request's `PIN_PROOF_HEADER` shows."""

    ABSENT = "absent"
    """No proof: an ordinary client. Its `x-slm-revision` is ignored, its traffic counts as user traffic."""
    VALID = "valid"
    """The operator: its pin is honoured and its traffic is kept out of the user metrics."""
    INVALID = "invalid"
    """A proof that does not match: refused (403), so an operator with a stale token fails loudly
    instead of validating whichever revision the weighted draw picks."""


def check_pin_proof(presented: str | None, digest: str | None) -> PinProof:
    """Whether `presented` (the header's value) is the token whose SHA-256 is `digest`."""
    if presented is None:
        return PinProof.ABSENT
    if digest is None:
        return PinProof.INVALID
    matches = hmac.compare_digest(pin_token_digest(presented), digest)
    return PinProof.VALID if matches else PinProof.INVALID
