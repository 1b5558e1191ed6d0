"""The private canary pin's token rules and the bounded `revision` metric tag."""

from __future__ import annotations

import pytest

from slm_serving.config import RouterUserConfig, default_max_request_bytes
from slm_serving.metrics import OTHER_REVISION_TAG, revision_tag
from slm_serving.pins import PinProof, check_pin_proof, derive_pin_token, pin_token_digest

KEY = b"operator-key-0123456789abcdef0123"


def test_tokens_are_per_deployment_and_per_key() -> None:
    token = derive_pin_token(KEY, "team-a/chat/uid-1")
    assert token == derive_pin_token(KEY, "team-a/chat/uid-1")
    assert len(token) == 64
    assert token != derive_pin_token(KEY, "team-b/chat/uid-2")
    assert token != derive_pin_token(KEY, "team-a/chat/uid-3")  # re-created under the same name
    assert token != derive_pin_token(b"another key", "team-a/chat/uid-1")


def test_the_digest_does_not_give_the_token_back() -> None:
    token = derive_pin_token(KEY, "ns/name/uid")
    digest = pin_token_digest(token)
    assert digest != token and token not in digest
    RouterUserConfig(served_model_name="m", routes=(), pin_token_sha256=digest)  # the contract accepts it


@pytest.mark.parametrize(
    ("presented", "digest", "expected"),
    [
        (None, pin_token_digest("t"), PinProof.ABSENT),
        (None, None, PinProof.ABSENT),
        ("t", pin_token_digest("t"), PinProof.VALID),
        ("u", pin_token_digest("t"), PinProof.INVALID),
        ("", pin_token_digest("t"), PinProof.INVALID),
        ("t", None, PinProof.INVALID),
        (pin_token_digest("t"), pin_token_digest("t"), PinProof.INVALID),  # the digest is not a proof
    ],
)
def test_check_pin_proof(presented: str | None, digest: str | None, expected: PinProof) -> None:
    assert check_pin_proof(presented, digest) is expected


def test_revision_tag_is_bounded_by_the_live_set() -> None:
    live = frozenset({"abc123", "def456"})
    tags = {revision_tag(f"client-{i}", live) for i in range(1000)} | {revision_tag(r, live) for r in live}
    assert tags == {"abc123", "def456", OTHER_REVISION_TAG}
    assert revision_tag(None, live) == OTHER_REVISION_TAG


@pytest.mark.parametrize(
    ("max_model_len", "expected"), [(None, 32768 * 32), (2048, 1024 * 1024), (131072, 131072 * 32)]
)
def test_request_cap_fits_the_context(max_model_len: int | None, expected: int) -> None:
    assert default_max_request_bytes(max_model_len) == expected
