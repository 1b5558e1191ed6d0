"""The operator's probe clients share one TLS context that still verifies servers."""

from __future__ import annotations

import ssl

from slm_operator.http_clients import async_client, shared_tls_context


async def test_every_client_uses_the_one_verifying_tls_context() -> None:
    async with async_client() as first, async_client(timeout=1) as second:
        contexts = {id(client._transport._pool._ssl_context) for client in (first, second)}  # type: ignore[attr-defined]
    assert contexts == {id(shared_tls_context())}
    assert shared_tls_context().verify_mode is ssl.CERT_REQUIRED
    assert shared_tls_context().check_hostname
