"""The operator's HTTP clients to routers and Ray dashboards: every one shares one TLS context.

httpx builds a TLS context per client otherwise, loading the CA bundle each time (about 30 ms of CPU
and the certificates' memory per client); a probe opens a client per run, and a large cluster runs
hundreds of probes at a time.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import certifi
import httpx


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """The context httpx would build for `verify=True` (certifi's CA bundle), built once."""
    return ssl.create_default_context(cafile=certifi.where())


def async_client(**options: Any) -> httpx.AsyncClient:
    """`httpx.AsyncClient(**options)` on the shared TLS context."""
    return httpx.AsyncClient(verify=shared_tls_context(), **options)
