"""The one "routes settled" rule both shells use: when the router runs the weights in status."""

from __future__ import annotations

DEFAULT_ROUTES_SETTLE_SECONDS = 10.0
"""How long after a config change the router counts as reconfigured. A retired revision's application
is deleted only then: a request still routed to a deleted application would wait for it in vain."""


def is_routes_settled(
    *, config_applied: bool, router_running: bool, seconds_since_applied: float | None, settle_seconds: float
) -> bool:
    """The router serves the weights of the status: its config is the one wanted (`config_applied`),
    its application is RUNNING, and it has had the config for `settle_seconds` (None: the time it was
    applied is unknown, e.g. written by an older operator, and taken as long enough)."""
    if not (config_applied and router_running):
        return False
    return seconds_since_applied is None or seconds_since_applied >= settle_seconds
